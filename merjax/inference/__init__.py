"""Inference: the trained model artefact, its directory on disk, and song-level prediction.

``artefact``: :class:`HybridModel` and the one jitted :func:`forward` pass;
``directory``: :func:`save_model` / :func:`load_model` (atomic);
``songs``: which windows of a song are decoded, and decoding only those (no JAX: it runs in
the decoding workers);
``predict``: the streamed, parallel, resumable prediction of a music library.

Names are loaded lazily (PEP 562), so that the decoding workers do not import JAX.
"""

import importlib

_EXPORTS = {
    "HybridModel": "artefact",
    "forward": "artefact",
    "load_model": "directory",
    "save_model": "directory",
    "predict_library": "predict",
    "predict_songs": "predict",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  if name in _EXPORTS:
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
  return __all__
