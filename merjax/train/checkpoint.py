"""Checkpoints: one orbax layout for training work dirs, tune trials and the model directory.

Every checkpoint directory has the same layout: numbered orbax steps, each holding a pytree
of arrays and a JSON record (``format``, ``kind`` and what that kind needs)::

    DIR/<step>/arrays/   orbax pytree (tensorstore)
    DIR/<step>/meta/     JSON: {"format", "kind", ...}

:func:`save_arrays` and :func:`restore_arrays` are the only code that reads or writes one;
two kinds use them:

* ``run``: a training run (a ``--workdir`` stage, or a Ray Tune trial, which is a training
  run whose work dir Ray owns). Step ``k`` is the run after ``k`` finished epochs; its arrays
  are ``{"state", "best_state", "rng"}`` (train states as plain dicts: ``step``, ``params``,
  ``batch_stats``, ``opt_state``) and its meta holds the run's settings, the stopper, the
  history and the next epoch. :class:`Checkpointer` writes one per epoch, :func:`restore_run`
  reads the newest, whoever wrote it, and :func:`load_variables` gives its best weights.
* ``model``: the variables of a model directory (``MODEL_DIR/variables``, step 0, arrays
  ``{"cnn", "dnn", "fusion"}``; :mod:`merjax.inference.directory` adds the JSON beside it).

Exact resume: a run saves everything the rest of it depends on (params, BatchNorm
statistics, optimizer state and step, the best epoch's weights, the dropout key, the stopper,
the history). The data order needs no state of its own: it is a pure function of the
shuffling seed and the epoch index (:class:`merjax.batches.split.DeviceBatches`, and the
grain pipeline's ``seed`` + epoch), and the dropout key of a step is ``fold_in(rng, step)``.
A run killed at any point and restarted on the same work dir therefore replays the remaining
epochs exactly as an uninterrupted run would. That also needs deterministic kernels and the
same device count: nothing on CPU; on GPU ``XLA_FLAGS=--xla_gpu_deterministic_ops=true``
(cuDNN convolution autotuning and scatter-add atomics otherwise vary from run to run).

Multi-host: every process calls the same functions on the same shared directory; orbax
writes the arrays with every process and the JSON with process 0.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import serialization

from merjax.errors import MerjaxError
from merjax.train.state import TrainState
from merjax.train.stopping import EarlyStopping

FORMAT = 2


def _manager(directory: str, *, max_to_keep: int | None = None,
             create: bool = False) -> ocp.CheckpointManager:
  path = directory if "://" in directory else os.path.abspath(directory)
  return ocp.CheckpointManager(
      path, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=create),
      item_handlers={"arrays": ocp.StandardCheckpointHandler(),
                     "meta": ocp.JsonCheckpointHandler()})


def _save_args(arrays: Any, *, kind: str, meta: dict[str, Any]) -> ocp.args.Composite:
  return ocp.args.Composite(arrays=ocp.args.StandardSave(jax.device_get(arrays)),
                            meta=ocp.args.JsonSave({"format": FORMAT, "kind": kind, **meta}))


def _one_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  line = text[0] if text else type(error).__name__
  return line if len(line) <= 200 else line[:197] + "..."


def save_arrays(directory: str | os.PathLike, *, step: int, kind: str, arrays: Any,
                meta: dict[str, Any] | None = None) -> None:
  """Writes one checkpoint step, synchronously (every process of a multi-host run calls it).

  Args:
    directory: the checkpoint directory (created when missing).
    step: the step number (a run's finished epochs; 0 for a model's variables).
    kind: the layout, recorded in the meta (``"run"``, ``"model"``).
    arrays: a pytree of arrays (copied to the host first).
    meta: JSON-able record of what else that kind needs.
  """
  manager = _manager(os.fspath(directory), create=True)
  try:
    manager.save(step, args=_save_args(arrays, kind=kind, meta=meta or {}))
    manager.wait_until_finished()
  finally:
    manager.close()


def restore_arrays(directory: str | os.PathLike, *, kind: str,
                   like: Any = None) -> tuple[int, Any, dict[str, Any]] | None:
  """Reads the newest step of a checkpoint directory.

  Args:
    directory: the checkpoint directory.
    kind: the layout expected in its meta (``"run"``, ``"model"``).
    like: a host pytree of the saved structure, shapes and dtypes to restore into (its
      leaves' types are kept, e.g. numpy arrays); None restores the saved tree as it is.

  Returns:
    ``(step, arrays, meta)``, or None when the directory does not exist or holds no step.

  Raises:
    MerjaxError: one line naming the directory: the checkpoint is damaged, of another
      format or kind, or does not fit ``like``.
  """
  directory = os.fspath(directory)
  if "://" not in directory and not os.path.isdir(directory):
    return None
  manager = _manager(directory)
  try:
    step = manager.latest_step()
    if step is None:
      return None
    where = os.path.join(directory, str(step))
    try:
      meta = manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
    except Exception as error:  # orbax/tensorstore/json raise many types for a damaged step
      raise MerjaxError(f"the checkpoint {where} is damaged: {_one_line(error)}") from error
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
      found = meta.get("format") if isinstance(meta, dict) else None
      raise MerjaxError(f"the checkpoint {where} has format {found}, expected {FORMAT}; "
                        "it was written by another merjax version")
    if meta.get("kind") != kind:
      raise MerjaxError(f"the checkpoint {where} holds a {meta.get('kind')!r} checkpoint, "
                        f"not a {kind!r} one")
    try:
      if like is not None:
        like = jax.device_get(like)
        saved = manager.item_metadata(step)["arrays"]
        _check_like(like, {leaf.name: tuple(leaf.shape) for leaf in jax.tree.leaves(saved)},
                    where)
      restore = ocp.args.StandardRestore(like)
      arrays = manager.restore(step, args=ocp.args.Composite(arrays=restore))["arrays"]
    except MerjaxError:
      raise
    except Exception as error:
      raise MerjaxError(f"the checkpoint {where} is damaged: {_one_line(error)}") from error
  finally:
    manager.close()
  return step, arrays, meta


def _check_like(expected: Any, saved: dict[str, tuple[int, ...]], where: str) -> None:
  """Raises unless the saved arrays (``{"a.b.c": shape}``) have ``expected``'s names and shapes."""
  names = {".".join(str(getattr(key, "key", key)) for key in path): np.shape(leaf)
           for path, leaf in jax.tree_util.tree_leaves_with_path(expected)}
  for name in sorted(set(names) | set(saved)):
    if names.get(name) != saved.get(name):
      found = "is missing" if name not in saved else f"has shape {saved[name]}"
      wanted = "not expected" if name not in names else f"expected {names[name]}"
      raise MerjaxError(f"the checkpoint {where} does not fit this model/optimizer: "
                        f"{name} {found}, {wanted}")


# --- training runs (work dirs and tune trials) -------------------------------------------------

@dataclasses.dataclass
class Restored:
  """A run as :func:`restore_run` gives it back (arrays on the host)."""

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
  return None if value is None else json.loads(json.dumps(value))


def _run_checkpoint(*, next_epoch: int, state: TrainState, best_state: TrainState,
                    rng: jax.Array, stopper: EarlyStopping, history: list[dict[str, float]],
                    config: Any) -> tuple[dict, dict]:
  key, impl = _key_data(rng)
  arrays = {"state": serialization.to_state_dict(jax.device_get(state)),
            "best_state": serialization.to_state_dict(jax.device_get(best_state)), "rng": key}
  meta = {"next_epoch": next_epoch, "rng_impl": impl,
          "stopper": stopper.state_dict(), "history": history, "config": config}
  return arrays, meta


class Checkpointer:
  """Writes a training run's checkpoint after every epoch, asynchronously, into ``directory``.

  Args:
    directory: the run's directory (local path or a path orbax understands, e.g. ``gs://``);
      every process of a multi-host run passes the same shared directory.
    config: the run's settings, recorded so that :func:`restore_run` refuses to continue the
      run with others (any JSON-able value, e.g. ``{"stage": ..., **TrainConfig.to_dict()}``).
    max_to_keep: how many epochs' checkpoints to keep (older ones are deleted).
  """

  def __init__(self, directory: str | os.PathLike, *, config: Any, max_to_keep: int = 2):
    self.config = _json_roundtrip(config)
    self.manager = _manager(os.fspath(directory), max_to_keep=max_to_keep, create=True)

  def save(self, *, next_epoch: int, state: TrainState, best_state: TrainState, rng: jax.Array,
           stopper: EarlyStopping, history: list[dict[str, float]]) -> None:
    """Starts saving the run after ``next_epoch`` finished epochs.

    The arrays are copied to the host first, so the caller may donate ``state`` right after.
    """
    arrays, meta = _run_checkpoint(next_epoch=next_epoch, state=state, best_state=best_state,
                                   rng=rng, stopper=stopper, history=history,
                                   config=self.config)
    self.manager.save(next_epoch, args=_save_args(arrays, kind="run", meta=meta))

  def close(self) -> None:
    """Waits for pending saves and releases the manager."""
    self.manager.wait_until_finished()
    self.manager.close()

  def __enter__(self) -> Checkpointer:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def restore_run(directory: str | os.PathLike, *, state: TrainState, rng: jax.Array,
                config: Any = None, missing_ok: bool = False) -> Restored | None:
  """Restores the newest checkpoint of a training run: a work dir or a tune trial's.

  Args:
    directory: the run's directory.
    state: a state of the same model and optimizer (its structure and dtypes are used).
    rng: a key of the same kind as the saved one (used as the template).
    config: the settings the caller continues with; the run must have been saved with the
      same ones (None skips the check).
    missing_ok: return None when ``directory`` holds no checkpoint (a run not started yet)
      instead of raising.

  A multi-host run must find the same checkpoints on every process: open the run's
  :class:`Checkpointer` first (creating it is a barrier after the directory exists).

  Returns:
    The saved run, host-resident (None only with ``missing_ok``).

  Raises:
    MerjaxError: one line naming the directory: no checkpoint, a damaged one, another model
      or optimizer, or other settings.
  """
  host = jax.device_get(state)
  template = {"state": serialization.to_state_dict(host),
              "best_state": serialization.to_state_dict(host), "rng": _key_data(rng)[0]}
  restored = restore_arrays(directory, kind="run", like=template)
  if restored is None:
    if missing_ok:
      return None
    raise MerjaxError(f"{os.fspath(directory)} holds no merjax training checkpoint")
  _, arrays, meta = restored
  config = _json_roundtrip(config)
  if config is not None and meta.get("config") not in (None, config):
    changed = sorted(k for k in set(config) | set(meta["config"])
                     if config.get(k) != meta["config"].get(k))
    raise MerjaxError(f"the work dir {os.fspath(directory)} holds a run with other settings "
                      f"(changed: {', '.join(changed)}); use a new work dir")
  key = arrays["rng"]
  if meta["rng_impl"] is not None:
    key = jax.random.wrap_key_data(key, impl=meta["rng_impl"])
  return Restored(state=serialization.from_state_dict(host, arrays["state"]),
                  best_state=serialization.from_state_dict(host, arrays["best_state"]),
                  rng=key, stopper=EarlyStopping.from_state_dict(meta["stopper"]),
                  history=list(meta["history"]), next_epoch=int(meta["next_epoch"]))


def load_variables(directory: str | os.PathLike) -> dict[str, Any]:
  """The best epoch's model variables of a run (``params`` and, for the CNN, ``batch_stats``).

  Needs no model: the arrays are read as saved (numpy, on the host).

  Raises:
    MerjaxError: ``directory`` holds no run checkpoint, or a damaged one.
  """
  restored = restore_arrays(directory, kind="run")
  if restored is None:
    raise MerjaxError(f"{os.fspath(directory)} holds no merjax training checkpoint")
  best = restored[1]["best_state"]
  variables = {"params": best["params"]}
  if best.get("batch_stats"):
    variables["batch_stats"] = best["batch_stats"]
  return variables
