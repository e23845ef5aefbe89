"""Where the DNN branch's features come from in train, tune, evaluate and the experiments.

``--features builtin|essentia`` extracts them from the audio (see :mod:`merjax.features.extract`);
``--features table --table CSV`` takes exactly the table's feature columns (for 4QAED, the
authors' ``all_features.csv`` with its 1,714 features; see :mod:`merjax.features.table`), one
row per song id. The run's :class:`~merjax.config.Config` records the table in
``features_table`` (:func:`table_record`: absolute path, SHA-256, column count and id column),
so a model directory says which table its DNN was trained on, and evaluation checks that the
table it reads is the same one.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from merjax.errors import MerjaxError

FEATURE_SOURCES: tuple[str, ...] = ("builtin", "essentia", "table")


def file_sha256(path: str | os.PathLike) -> str:
  """Hex SHA-256 of a file's bytes."""
  digest = hashlib.sha256()
  try:
    with open(path, "rb") as f:
      for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
  except OSError as error:
    raise MerjaxError(f"cannot read the feature table {path}: {error}") from None
  return digest.hexdigest()


@functools.lru_cache(maxsize=4)
def _read_table(path: str, sha256: str, id_column: str | None):
  from merjax.features.table import read_feature_table
  del sha256  # part of the cache key only: a changed file is read again
  return read_feature_table(path, id_column=id_column)


def table_record(path: str | os.PathLike, *, id_column: str | None = None) -> dict[str, Any]:
  """Identifies a feature table: what a model directory records about it.

  Args:
    path: the CSV file.
    id_column: its song-id column (default ``Song``, else the first column).

  Returns:
    ``{"path": absolute path, "sha256": hex digest, "columns": number of feature columns,
    "id_column": the id column as given (None: the default)}``.
  """
  path = Path(path).expanduser().absolute()
  if not path.is_file():
    raise MerjaxError(f"--table {path} is not a file")
  sha256 = file_sha256(path)
  table = _read_table(str(path), sha256, id_column)
  return {"path": str(path), "sha256": sha256, "columns": len(table.names),
          "id_column": id_column}


def features_config(config, *, features: str | None = None, table: str | os.PathLike | None = None,
                    id_column: str | None = None):
  """``config`` with the feature source of ``--features``/``--table`` (same rules as
  ``merjax features --backend/--table``).

  Args:
    config: a :class:`~merjax.config.Config`.
    features: ``builtin``, ``essentia`` or ``table``; None keeps ``config.features_backend``.
    table: the CSV of precomputed features (only with ``features="table"``).
    id_column: the table's song-id column.

  Returns:
    The config with ``features_backend`` and ``features_table`` set.
  """
  backend = config.features_backend if features is None else features
  if backend not in FEATURE_SOURCES:
    raise MerjaxError(f"--features must be one of {', '.join(FEATURE_SOURCES)}, got {backend!r}")
  if backend == "table":
    if table is None:
      raise MerjaxError("--features table needs the CSV of features (--table CSV)")
    return config.replace(features_backend="table",
                          features_table=table_record(table, id_column=id_column))
  if table is not None:
    raise MerjaxError(f"--table is only used with --features table, not {backend!r}")
  return config.replace(features_backend=backend, features_table=None)


def features_record(config) -> dict[str, Any]:
  """``{"backend": ..., "table": table_record or None}`` of a run's or a model's config."""
  return {"backend": config.features_backend,
          "table": getattr(config, "features_table", None)}


def describe(record: Mapping[str, Any]) -> str:
  """A short description of a feature source, e.g. ``the table all_features.csv (1714 ...)``."""
  table = record.get("table")
  if record.get("backend") != "table" or not table:
    return f"the {record.get('backend')} features"
  return (f"the feature table {table['path']} ({table['columns']} columns, sha256 "
          f"{table['sha256'][:12]})")


def require_audio_features(record: Mapping[str, Any]) -> None:
  """Raises unless a model's DNN features can be computed from audio alone.

  Call it before extracting features of new audio (``merjax predict``) with
  :func:`features_record` of the model's config.

  Raises:
    MerjaxError: for a model trained with ``--features table``: its DNN needs that table's
      rows (same columns) for the new songs, which audio files do not provide.
  """
  if record.get("backend") == "table":
    raise _table_needs_rows(record)


def _table_needs_rows(record: Mapping[str, Any]) -> MerjaxError:
  """The :func:`require_audio_features` error for a ``--features table`` ``record``."""
  return MerjaxError(
      f"this model's DNN was trained on {describe(record)}: it needs that table's rows (the "
      f"same columns) for the new songs, which cannot be computed from audio files; score "
      f"songs the table covers with `merjax evaluate --table CSV`, or train a model with "
      f"--features builtin or essentia to predict from audio")


def table_inputs(record: Mapping[str, Any] | None, song_ids: Sequence[str] | None
                 ) -> tuple[np.ndarray, list[str]]:
  """The rows of a recorded table for ``song_ids``, after checking it is the recorded file.

  Args:
    record: a :func:`table_record` (``config.features_table``).
    song_ids: the clips' song ids, in order; None (audio without ids) raises the
      :func:`require_audio_features` error.

  Returns:
    ``(values [shape=(len(song_ids), columns)] float32, column names)``.
  """
  if record is None:
    raise MerjaxError("the table feature source has no table; give --table CSV")
  if song_ids is None:
    raise _table_needs_rows({"backend": "table", "table": record})
  path = record["path"]
  if not Path(path).is_file():
    raise MerjaxError(f"the feature table {path} recorded with this run is missing; give "
                      f"--table CSV")
  sha256 = file_sha256(path)
  if sha256 != record["sha256"]:
    raise MerjaxError(f"the feature table {path} changed since it was recorded (sha256 "
                      f"{sha256[:12]}, recorded {record['sha256'][:12]}); give --table CSV "
                      f"again")
  table = _read_table(path, sha256, record.get("id_column"))
  ids = [str(s) for s in song_ids]
  missing = sorted(set(ids) - set(table.song_ids.tolist()))
  if missing:
    from merjax.features.featureset import preview
    raise MerjaxError(f"feature table {path} has no row for {len(missing)} song(s): "
                      f"{preview(missing)}")
  return table.select(ids).values.astype(np.float32), list(table.names)


def model_table(model_config, *, features: str | None = None,
                table: str | os.PathLike | None = None, id_column: str | None = None,
                expected_names: Sequence[str] | None = None):
  """A saved model's config with the feature source to evaluate it on.

  ``features`` must be the model's own source; ``table`` (only for a table-trained model)
  replaces the recorded table by one with the same columns, e.g. with rows for other songs.

  Args:
    model_config: the model's :class:`~merjax.config.Config`.
    features: ``--features`` as given (None: the model's).
    table: ``--table`` as given (None: the recorded table).
    id_column: the new table's song-id column.
    expected_names: the feature columns the model's preprocessing expects.

  Returns:
    The config to compute the model's inputs with.
  """
  backend = model_config.features_backend
  if features is not None and features != backend:
    raise MerjaxError(f"this model's DNN was trained on {backend} features, not {features}; "
                      f"drop --features or give --features {backend}")
  if table is None:
    return model_config
  if backend != "table":
    raise MerjaxError(f"--table is only used with models trained with --features table; this "
                      f"one uses {backend} features")
  record = table_record(table, id_column=id_column)
  if expected_names is not None:
    names = _read_table(record["path"], record["sha256"], id_column).names
    if list(names) != list(expected_names):
      raise MerjaxError(f"--table {record['path']} has {len(names)} feature columns, not the "
                        f"{len(expected_names)} the model was trained on (or not in the same "
                        f"order)")
  return model_config.replace(features_table=record)
