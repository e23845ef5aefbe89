"""The feature manifest: every column with its musical dimension and a one-line description."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from pathlib import Path

from merjax.errors import MerjaxError
from merjax.features.backends import audio_backend


@dataclasses.dataclass(frozen=True)
class FeatureInfo:
  """One column: ``name`` is ``dimension.descriptor.statistic``."""

  name: str
  dimension: str
  description: str


def feature_manifest(*, backend: str = "builtin", sample_rate: int = 16000) -> list[FeatureInfo]:
  """The manifest of an audio backend, in column order (the order of ``feature_names``)."""
  return [FeatureInfo(*row) for row in audio_backend(backend).manifest(sample_rate=sample_rate)]


def write_manifest(path: str | os.PathLike, *, backend: str = "builtin",
                   sample_rate: int = 16000) -> Path:
  """Writes the manifest as CSV (``name,dimension,description``) or JSON, by file suffix.

  Returns:
    The written path.
  """
  path = Path(path)
  if path.suffix.lower() not in (".csv", ".json"):
    raise MerjaxError(f"manifest file {path} must end in .csv or .json")
  rows = feature_manifest(backend=backend, sample_rate=sample_rate)
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
  except OSError as error:
    raise MerjaxError(f"cannot write the manifest {path}: {error}") from None
  if path.suffix.lower() == ".json":
    path.write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1) + "\n")
  else:
    with open(path, "w", newline="") as f:
      writer = csv.writer(f)
      writer.writerow(["name", "dimension", "description"])
      writer.writerows(dataclasses.astuple(r) for r in rows)
  return path
