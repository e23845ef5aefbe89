"""The feature backends by name, their column names and their cache keys.

``builtin`` (the default, :mod:`merjax.features.builtin`) and ``essentia``
(:mod:`merjax.features.essentia_backend`) extract features from audio; ``table`` reads
precomputed features from a CSV (:mod:`merjax.features.table`) and has no audio extractor.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from types import ModuleType

from merjax.errors import MerjaxError

BACKENDS: tuple[str, ...] = ("builtin", "essentia", "table")
_AUDIO_BACKENDS = {"builtin": "merjax.features.builtin",
                   "essentia": "merjax.features.essentia_backend"}


def audio_backend(backend: str) -> ModuleType:
  """The module implementing an audio backend (``extract``, ``feature_names``, ``config``)."""
  if backend == "table":
    raise MerjaxError(
        "the table backend reads precomputed features from a CSV instead of extracting them "
        "from audio: use merjax.features.read_feature_table, or "
        "`merjax features --backend table --table CSV`")
  if backend not in _AUDIO_BACKENDS:
    raise MerjaxError(f"unknown feature backend {backend!r}; choose one of {', '.join(BACKENDS)}")
  return importlib.import_module(_AUDIO_BACKENDS[backend])


def _check_rate(sample_rate) -> int:
  if not isinstance(sample_rate, int) or isinstance(sample_rate, bool) or sample_rate < 1000:
    raise MerjaxError(f"sample_rate must be an integer of at least 1000 Hz, got {sample_rate!r}")
  return sample_rate


def feature_names(*, backend: str = "builtin", sample_rate: int = 16000) -> list[str]:
  """Column names ``dimension.descriptor.statistic`` of an audio backend, in column order."""
  return audio_backend(backend).feature_names(sample_rate=_check_rate(sample_rate))


def backend_config(backend: str, *, sample_rate: int = 16000) -> dict:
  """Everything that determines an audio backend's output (its version and settings)."""
  return audio_backend(backend).config(sample_rate=_check_rate(sample_rate))


def backend_key(backend: str, *, sample_rate: int = 16000) -> str:
  """A short hash of :func:`backend_config`: cached features are valid only under this key."""
  text = json.dumps(backend_config(backend, sample_rate=sample_rate), sort_keys=True)
  return hashlib.sha256(text.encode()).hexdigest()[:16]
