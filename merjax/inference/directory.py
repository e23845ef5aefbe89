"""A self-contained model directory: everything ``merjax evaluate`` and ``predict`` need.

Layout::

    MODEL_DIR/
      config.json            the run's Config
      preprocessing.json     log-mel mean/std and the fitted feature preprocessing
      cnn/ dnn/ fusion/      orbax checkpoints of each stage's variables
      training.json          per-stage history, best epoch and stop reason (optional)

:func:`save_model` writes everything into a temporary sibling directory and renames it into
place, so an interrupted save never leaves a half-written model that a rerun would refuse.
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
  import orbax.checkpoint as ocp

  path = Path(path).absolute()
  if path.exists() and not path.is_dir():
    raise MerjaxError(f"model directory {path} exists and is not a directory")
  if (path / "config.json").exists():
    raise MerjaxError(f"{path} already holds a model; choose another --out or delete it")
  with atomic_directory(path) as tmp:
    checkpointer = ocp.StandardCheckpointer()
    for stage in _STAGES:
      checkpointer.save(tmp / stage, jax.device_get(getattr(model, stage)))
    checkpointer.wait_until_finished()
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
  """
  import orbax.checkpoint as ocp

  from merjax.config import config_from_dict
  from merjax.features import FeaturePreprocessor

  path = Path(path).absolute()
  if not path.is_dir():
    raise MerjaxError(f"{path}: no such model directory")
  missing = [name for name in ("config.json", "preprocessing.json", *_STAGES)
             if not (path / name).exists()]
  if missing:
    raise MerjaxError(f"{path} is not a merjax model directory (missing {', '.join(missing)})")
  config = config_from_dict(json.loads((path / "config.json").read_text()))
  execution = {key: value for key, value in (("cnn_impl", cnn_impl), ("dtype", dtype))
               if value is not None}
  if execution:  # execution settings, not part of what was learned (checked by ModelConfig)
    config = config.replace(model=config.model.replace(**execution))
  preprocessing = json.loads((path / "preprocessing.json").read_text())
  checkpointer = ocp.StandardCheckpointer()
  variables = {stage: checkpointer.restore(path / stage) for stage in _STAGES}
  features = preprocessing["features"]
  return HybridModel(config=config, **variables, mel_mean=preprocessing["mel_mean"],
                     mel_std=preprocessing["mel_std"],
                     feature_preprocessor=(None if features is None
                                           else FeaturePreprocessor.from_dict(features)))
