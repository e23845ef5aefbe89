"""A self-contained model directory: everything ``merjax evaluate`` and ``predict`` need.

Layout::

    MODEL_DIR/
      config.json            the run's Config
      preprocessing.json     log-mel mean/std and the fitted feature preprocessing
      variables/             the variables of the three stages, {"cnn", "dnn", "fusion"}: a
                             checkpoint of kind "model" (:mod:`merjax.train.checkpoint`)
      training.json          per-stage history, best epoch and stop reason (optional)

:func:`save_model` writes everything into a temporary sibling directory and renames it into
place, so an interrupted save never leaves a half-written model that a rerun would refuse.
In a multi-host run every process writes the variables into one agreed temporary directory and
process 0 alone writes the JSON files and renames it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from merjax.errors import MerjaxError
from merjax.inference.artefact import HybridModel
from merjax.parallel.files import atomic_directory

_STAGES = ("cnn", "dnn", "fusion")
_FILES = ("config.json", "preprocessing.json", "variables")


def save_model(model: HybridModel, path: str | os.PathLike, *,
               training: dict[str, Any] | None = None) -> Path:
  """Writes a :class:`HybridModel` to ``path``, atomically (temporary directory, then rename).

  Args:
    model: the trained hybrid.
    path: the model directory: must not exist, or be empty.
    training: optional JSON-able training record (histories, stop reasons).

  Returns:
    The directory path.
  """
  import jax

  from merjax.train.checkpoint import save_arrays

  path = Path(path).absolute()
  if path.exists() and not path.is_dir():
    raise MerjaxError(f"model directory {path} exists and is not a directory")
  if (path / "config.json").exists():
    raise MerjaxError(f"{path} already holds a model; choose another --out or delete it")
  with atomic_directory(path) as tmp:
    save_arrays(tmp / "variables", step=0, kind="model",
                arrays={stage: getattr(model, stage) for stage in _STAGES})
    if jax.process_index() != 0:  # orbax writes with every process; the rest is process 0's
      return path
    preprocessing = {"mel_mean": model.mel_mean, "mel_std": model.mel_std,
                     "features": (None if model.feature_preprocessor is None
                                  else model.feature_preprocessor.to_dict())}
    (tmp / "preprocessing.json").write_text(json.dumps(preprocessing) + "\n")
    if training is not None:
      (tmp / "training.json").write_text(json.dumps(training, indent=2) + "\n")
    (tmp / "config.json").write_text(json.dumps(model.config.to_dict(), indent=2) + "\n")
  return path


def load_model(path: str | os.PathLike, *, cnn_impl: str | None = None,
               dtype: str | None = None) -> HybridModel:
  """Reads a model directory written by :func:`save_model`.

  Args:
    path: the model directory.
    cnn_impl: run the CNN with this implementation instead of the recorded one (``auto``,
      ``fast``, ``plain``): the variables are the same.
    dtype: compute in this dtype instead of the recorded one (``float32``, ``bfloat16``).

  Returns:
    The :class:`HybridModel`.

  Raises:
    MerjaxError: one line naming the directory: missing, not a model directory, or damaged.
  """
  from merjax.config import config_from_dict
  from merjax.features import FeaturePreprocessor
  from merjax.train.checkpoint import restore_arrays

  path = Path(path).absolute()
  if not path.is_dir():
    raise MerjaxError(f"{path}: no such model directory")
  missing = [name for name in _FILES if not (path / name).exists()]
  if missing:
    raise MerjaxError(f"{path} is not a merjax model directory (missing {', '.join(missing)})")
  config = config_from_dict(_read_json(path / "config.json"))
  execution = {key: value for key, value in (("cnn_impl", cnn_impl), ("dtype", dtype))
               if value is not None}
  if execution:  # execution settings, not part of what was learned (checked by ModelConfig)
    config = config.replace(model=config.model.replace(**execution))
  preprocessing = _read_json(path / "preprocessing.json")
  restored = restore_arrays(path / "variables", kind="model")
  if restored is None or set(restored[1]) != set(_STAGES):
    raise MerjaxError(f"{path / 'variables'} holds no model variables (cnn, dnn, fusion)")
  variables = restored[1]
  features = preprocessing["features"]
  return HybridModel(config=config, **variables, mel_mean=preprocessing["mel_mean"],
                     mel_std=preprocessing["mel_std"],
                     feature_preprocessor=(None if features is None
                                           else FeaturePreprocessor.from_dict(features)))


def _read_json(file: Path) -> Any:
  try:
    return json.loads(file.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
    raise MerjaxError(f"{file} is damaged: {error}") from None
