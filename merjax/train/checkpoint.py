"""Whole-run checkpoints for exact resume (big_vision style: a work dir resumes itself).

Each epoch :func:`merjax.train.fit` saves, with orbax, everything the rest of the run depends
on: params, BatchNorm statistics, optimizer state and step (the train state), the best
epoch's weights, the dropout key, the stopper (:class:`~merjax.train.EarlyStopping` state),
the history and the next epoch's index. The data order needs no state of its own: it is a
pure function of the shuffling seed and the epoch index (:class:`merjax.batches.split.DeviceBatches`,
and the grain pipeline's ``seed`` + epoch), and the dropout key of a step is
``fold_in(rng, step)``. A run killed at any point and restarted on the same work dir therefore
replays the remaining epochs exactly as an uninterrupted run would.

Bit-identical resume also needs deterministic kernels and the same device count: nothing on
CPU; on GPU ``XLA_FLAGS=--xla_gpu_deterministic_ops=true`` (cuDNN convolution autotuning and
scatter-add atomics otherwise vary from run to run).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp

from merjax.errors import MerjaxError
from merjax.train.state import TrainState
from merjax.train.stopping import EarlyStopping

FORMAT = 1


@dataclasses.dataclass
class Restored:
  """What :meth:`Checkpointer.restore` gives back (arrays on the host)."""

  state: TrainState
  best_state: TrainState
  rng: jax.Array
  stopper: EarlyStopping
  history: list[dict[str, float]]
  next_epoch: int


def _key_data(rng: jax.Array) -> tuple[np.ndarray, str | None]:
  if jax.dtypes.issubdtype(rng.dtype, jax.dtypes.prng_key):
    return np.asarray(jax.random.key_data(rng)), str(jax.random.key_impl(rng))
  return np.asarray(rng), None  # a raw uint32 key


def _json_roundtrip(value: Any) -> Any:
  return json.loads(json.dumps(value))


class Checkpointer:
  """Saves and restores a :func:`~merjax.train.fit` run in ``workdir``.

  Args:
    workdir: the run's directory (local path or a path orbax understands, e.g. ``gs://``);
      every process of a multi-host run passes the same shared directory.
    max_to_keep: how many epochs' checkpoints to keep (older ones are deleted).
    config: the run's settings, recorded and compared on restore so that a work dir is
      never resumed with different settings (any JSON-able value, e.g. ``TrainConfig.to_dict()``).
  """

  def __init__(self, workdir: str | os.PathLike, *, max_to_keep: int = 2, config: Any = None):
    self.workdir = os.fspath(workdir)
    self.config = None if config is None else _json_roundtrip(config)
    self.manager = ocp.CheckpointManager(
        os.path.abspath(self.workdir) if "://" not in self.workdir else self.workdir,
        options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True))

  def latest_epoch(self) -> int | None:
    """The number of finished epochs in the newest complete checkpoint, or None."""
    return self.manager.latest_step()

  def save(self, *, next_epoch: int, state: TrainState, best_state: TrainState, rng: jax.Array,
           stopper: EarlyStopping, history: list[dict[str, float]]) -> None:
    """Starts saving (asynchronously) the state after ``next_epoch`` finished epochs.

    The arrays are copied to the host first, so the caller may donate ``state`` right after.
    """
    key, impl = _key_data(rng)
    arrays = {"state": jax.device_get(state), "best_state": jax.device_get(best_state),
              "rng": key}
    meta = {"format": FORMAT, "next_epoch": next_epoch, "rng_impl": impl,
            "stopper": stopper.state_dict(), "history": history, "config": self.config}
    self.manager.save(next_epoch, args=ocp.args.Composite(
        arrays=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(meta)))

  def restore(self, *, state: TrainState, rng: jax.Array) -> Restored | None:
    """Restores the newest complete checkpoint, or returns None when there is none.

    Args:
      state: a state of the same model and optimizer (its structure and dtypes are used).
      rng: a key of the same kind as the saved one (used as the template).

    Returns:
      The saved run, host-resident, or None.

    Raises:
      MerjaxError: the checkpoint was written with different settings or another model.
    """
    step = self.manager.latest_step()
    if step is None:
      return None
    host = jax.device_get(state)
    template = {"state": host, "best_state": host, "rng": _key_data(rng)[0]}
    try:
      restored = self.manager.restore(step, args=ocp.args.Composite(
          arrays=ocp.args.StandardRestore(template), meta=ocp.args.JsonRestore()))
    except (ValueError, KeyError, TypeError) as e:
      raise MerjaxError(f"the checkpoint in {self.workdir} (epoch {step}) does not fit this "
                        f"model/optimizer: {e}") from e
    meta = restored["meta"]
    if meta.get("format") != FORMAT:
      raise MerjaxError(f"the checkpoint in {self.workdir} has format {meta.get('format')}, "
                        f"expected {FORMAT}")
    if self.config is not None and meta.get("config") not in (None, self.config):
      changed = sorted(k for k in set(self.config) | set(meta["config"])
                       if self.config.get(k) != meta["config"].get(k))
      raise MerjaxError(f"the work dir {self.workdir} holds a run with other settings "
                        f"(changed: {', '.join(changed)}); use a new work dir")
    arrays = restored["arrays"]
    key = arrays["rng"]
    if meta["rng_impl"] is not None:
      key = jax.random.wrap_key_data(key, impl=meta["rng_impl"])
    _check_like(host, arrays["state"], self.workdir)
    return Restored(state=arrays["state"], best_state=arrays["best_state"], rng=key,
                    stopper=EarlyStopping.from_state_dict(meta["stopper"]),
                    history=list(meta["history"]), next_epoch=int(meta["next_epoch"]))

  def wait(self) -> None:
    """Blocks until pending asynchronous saves are on disk."""
    self.manager.wait_until_finished()

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self.manager.wait_until_finished()
    self.manager.close()


def _check_like(expected: Any, got: Any, workdir: str) -> None:
  for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(expected), jax.tree.leaves(got)):
    if np.shape(a) != np.shape(b):
      raise MerjaxError(f"the checkpoint in {workdir} does not fit this model: "
                        f"{jax.tree_util.keystr(path)} has shape {np.shape(b)}, "
                        f"expected {np.shape(a)}")
