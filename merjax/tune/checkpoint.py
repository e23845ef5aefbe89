"""A trial's best-epoch checkpoint: orbax, readable without Ray.

Layout of one checkpoint directory (what Ray Tune stores as the trial's checkpoint)::

    CKPT/
      <epoch>/state/   the train state (params, BatchNorm statistics, optimizer state, step)
      <epoch>/meta/    JSON: epoch, hyperparameters, validation accuracy, stopping state

The trial writes one whenever validation accuracy improves, so the kept checkpoint is both
the trial's model (as the paper keeps every trial's model) and an exact resume point: batches
and dropout keys depend only on the seed, the epoch and the step, so continuing from it
repeats the interrupted epochs exactly.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import jax

from merjax.errors import MerjaxError
from merjax.train.state import TrainState
from merjax.train.stopping import EarlyStopping


def _state_tree(state: TrainState) -> dict:
  from flax import serialization
  return serialization.to_state_dict({"step": state.step, "params": state.params,
                                      "batch_stats": state.batch_stats,
                                      "opt_state": state.opt_state})


def save_trial_checkpoint(directory: str | os.PathLike, *, state: TrainState,
                          stopper: EarlyStopping, epoch: int, meta: dict[str, Any]) -> None:
  """Writes the state after ``epoch`` (0-based) and its metadata, synchronously.

  Args:
    directory: an empty directory.
    state: the train state to keep (copied to the host first).
    stopper: the stopping state after this epoch.
    epoch: the finished epoch, 0-based (the orbax step is ``epoch + 1``).
    meta: JSON-able extras (hyperparameters, metrics).
  """
  import orbax.checkpoint as ocp

  tree = jax.device_get(_state_tree(state))
  with contextlib.closing(ocp.CheckpointManager(os.path.abspath(directory))) as manager:
    manager.save(epoch + 1, args=ocp.args.Composite(
        state=ocp.args.StandardSave(tree),
        meta=ocp.args.JsonSave({**meta, "epoch": epoch + 1,
                                "early_stopping": stopper.state_dict()})))
    manager.wait_until_finished()


def _latest(directory: str | os.PathLike):
  import orbax.checkpoint as ocp
  manager = ocp.CheckpointManager(os.path.abspath(directory))
  step = manager.latest_step()
  if step is None:
    manager.close()
    raise MerjaxError(f"{directory} holds no merjax trial checkpoint")
  return manager, step


def read_trial_meta(directory: str | os.PathLike) -> dict:
  """The checkpoint's metadata (epoch, hyperparameters, metrics, stopping state)."""
  import orbax.checkpoint as ocp
  manager, step = _latest(directory)
  with contextlib.closing(manager):
    return manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]


def restore_trial_checkpoint(directory: str | os.PathLike, *, like: TrainState
                             ) -> tuple[TrainState, EarlyStopping, dict]:
  """Restores a checkpoint into the structure of ``like`` (a freshly created state).

  Returns:
    ``(state, stopper, meta)``.
  """
  import orbax.checkpoint as ocp
  from flax import serialization

  target = _state_tree(like)
  abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
  manager, step = _latest(directory)
  with contextlib.closing(manager):
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
  fields = serialization.from_state_dict(
      {"step": like.step, "params": like.params, "batch_stats": like.batch_stats,
       "opt_state": like.opt_state}, restored["state"])
  meta = restored["meta"]
  return like.replace(**fields), EarlyStopping.from_state_dict(meta["early_stopping"]), meta


def load_variables(directory: str | os.PathLike) -> dict:
  """The model variables of a checkpoint (``params`` and, for the CNN, ``batch_stats``)."""
  import orbax.checkpoint as ocp
  manager, step = _latest(directory)
  with contextlib.closing(manager):
    tree = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
  state = jax.device_get(tree["state"])
  variables = {"params": state["params"]}
  if state.get("batch_stats"):
    variables["batch_stats"] = state["batch_stats"]
  return variables
