"""One trial of a stage search: the Ray Tune trainable.

It trains the stage's network with the trial's optimizer, learning rate and batch size under
the paper's stopping rules, through the same stage functions as ``merjax train``
(:func:`merjax.train.stages.stage_network`, :func:`merjax.train.stages.train_classifier`), reports
every epoch to Ray Tune, and checkpoints each new best epoch as a training run
(:mod:`merjax.train.checkpoint`: a trial is a run whose work dir Ray owns). A trial Ray
restores after an interruption continues from that checkpoint and repeats the epochs after it
exactly.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from merjax.config import ModelConfig, TrainConfig
from merjax.parallel.platform import set_gpu_memory_defaults
from merjax.tune.space import apply_point

# {"train": {"inputs": [shape=(n, ...)], "label": [shape=(n,)]}, "validate": {...}}
StageArrays = Mapping[str, Mapping[str, np.ndarray]]


@dataclasses.dataclass(frozen=True)
class TrialSetup:
  """What every trial of one stage search shares.

  Attributes:
    stage: ``"cnn"``, ``"dnn"`` or ``"fusion"``.
    model: the network sizes.
    train: epochs cap, patience, the 0.90 rule and the seed (the searched values replace its
      optimizer, learning rate and batch size).
    gpus_per_trial: the GPU share. A fraction caps JAX's memory pool to that share of the
      GPU; several GPUs train the trial data-parallel over a mesh of them.
  """

  stage: str
  model: ModelConfig
  train: TrainConfig
  gpus_per_trial: float = 0.0


def _file_log(path: str):
  def log(line: str) -> None:
    with open(path, "a") as f:
      f.write(line + "\n")
  return log


def _result(record: dict, stopper, point: dict) -> dict[str, Any]:
  return {**record, **point, "best_val_accuracy": stopper.best_accuracy,
          "best_epoch": stopper.best_epoch + 1, "stop_reason": stopper.stop_reason,
          "early_stopping": stopper.state_dict()}


def run_trial(point: dict, *, setup: TrialSetup, data: StageArrays) -> None:
  """Trains one stage with ``point``'s hyperparameters, reporting each epoch to Ray Tune.

  Args:
    point: ``{"optimizer", "learning_rate", "batch_size"}`` chosen by the searcher.
    setup: the stage, network sizes and stopping rules.
    data: training and validation inputs with integer labels.

  Raises:
    merjax.train.TrainingDivergedError: when the loss becomes NaN or infinite (Ray records
      the trial as failed with this reason, and the search goes on).
  """
  if 0 < setup.gpus_per_trial < 1:  # several trials share a GPU: preallocate only our share
    set_gpu_memory_defaults(fraction=f"{0.9 * setup.gpus_per_trial:.3f}")
  from ray import tune

  from merjax import parallel
  from merjax.train.checkpoint import Checkpointer, restore_run
  from merjax.train.stages import stage_keys, stage_network, train_classifier

  config = apply_point(setup.train, point)
  settings = {"stage": setup.stage, **config.to_dict()}
  checkpoint = tune.get_checkpoint()
  # The run key train_classifier gives fit: saved with the trial like a work dir's, and the
  # template of the restore (a trial resumes its state and stopper; the key is the seed's).
  _, run_key = stage_keys(config)

  def resume(state):
    with checkpoint.as_directory() as directory:
      restored = restore_run(directory, state=state, rng=run_key, config=settings)
    return restored.state, restored.stopper

  def report(epoch: int, record: dict, state, stopper) -> None:
    metrics = _result(record, stopper, point)
    if not stopper.improved:
      tune.report(metrics)
      return
    with tempfile.TemporaryDirectory(prefix="merjax-trial-") as directory:
      with Checkpointer(directory, config=settings) as checkpoints:  # Ray keeps the history
        checkpoints.save(next_epoch=epoch + 1, state=state, best_state=state, rng=run_key,
                         stopper=stopper, history=[])
      tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

  # Ray makes only the trial's own GPUs visible: the trial trains over a mesh of them all.
  train_classifier(stage_network(setup.stage, setup.model), train=data["train"],
                   val=data["validate"], config=config, mesh=parallel.make_data_mesh(),
                   stage=setup.stage, hooks=[report],
                   resume=None if checkpoint is None else resume,
                   log=_file_log(os.path.join(tune.get_context().get_trial_dir(), "fit.log")))
