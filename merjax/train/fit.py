"""The epoch loop with the paper's stopping rules and best-epoch weights."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh

from merjax import parallel
from merjax.config import TrainConfig
from merjax.errors import MerjaxError
from merjax.train.state import TrainState
from merjax.train.steps import (
  jit_eval_step,
  jit_train_step,
  mesh_eval_step,
  mesh_train_step,
  sum_metrics,
)
from merjax.train.stopping import EarlyStopping


class TrainingDivergedError(MerjaxError):
  """The loss or a health metric became NaN or infinite."""


@dataclasses.dataclass
class FitResult:
  """Outcome of :func:`fit`: the best epoch's state and the per-epoch history."""

  state: TrainState
  history: list[dict[str, float]]
  best_epoch: int
  best_val_accuracy: float
  stop_reason: str


def evaluate_batches(state: TrainState, batches: Iterable[dict], *,
                     mesh: Mesh | None = None) -> tuple[dict[str, float], np.ndarray]:
  """Loss/accuracy over padded batches and the logits of the real examples, in order.

  Args:
    state: the model state (replicated on ``mesh`` when one is given).
    batches: padded, masked batches (host-local slices are assembled on ``mesh``).
    mesh: the data mesh, or None for the single-device step.

  Returns:
    ``({"loss", "accuracy"}, logits [shape=(n_real, n_classes)])``.
  """
  step = jit_eval_step if mesh is None else mesh_eval_step(mesh)
  per_step, logits, masks = [], [], []
  if mesh is not None:
    batches = parallel.prefetch_to_mesh(batches, mesh)
  for batch in batches:
    out = step(state, batch)
    per_step.append({k: out[k] for k in ("loss_sum", "correct", "count")})
    logits.append(out["logits"])
    masks.append(out["mask"])
  logits, masks = jax.device_get((logits, masks))
  real = np.concatenate(masks) > 0
  return sum_metrics(per_step), np.concatenate(logits)[real]


def _check_health(metrics: dict[str, float], *, stage: str, epoch: int) -> None:
  bad = {k: v for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
  if bad:
    raise TrainingDivergedError(
        f"stage {stage}, epoch {epoch + 1}: " + ", ".join(f"{k} is {v}" for k, v in bad.items())
        + " (try a smaller learning rate)")


def _host_copy(state: TrainState) -> TrainState:
  # Donation invalidates the live buffers, so the best epoch is kept as a host copy.
  return jax.device_get(state)


def fit(state: TrainState, *, train_batches: Callable[[int], Iterable[dict]],
        val_batches: Callable[[], Iterable[dict]], config: TrainConfig, rng: jax.Array,
        stage: str = "train", log: Callable[[str], Any] | None = print,
        stopper: EarlyStopping | None = None,
        on_epoch_end: Callable[[int, dict, TrainState, EarlyStopping], Any] | None = None,
        mesh: Mesh | None = None, workdir: str | os.PathLike | None = None,
        max_to_keep: int = 2) -> FitResult:
  """Trains until the paper's stopping rules fire, and returns the best epoch's weights.

  Args:
    state: the initial train state.
    train_batches: ``epoch -> iterable of batches`` (shuffled per epoch), e.g. the
      ``epoch`` of :func:`merjax.batches.split.split_batches`. With a ``mesh``, batches are
      either already sharded along ``data`` or this process's rows of each global batch
      (assembled with ``make_array_from_process_local_data``, two batches ahead). With
      device-resident batches the loop makes no implicit host-device transfer: it runs under
      ``jax.transfer_guard("disallow")``.
    val_batches: ``() -> iterable of padded, masked validation batches``.
    config: epochs cap, patience and the training-accuracy rule.
    rng: the run's dropout key (folded with the step inside :func:`train_step`).
    stage: a name for log lines and errors (``"cnn"``, ``"dnn"``, ``"fusion"``).
    log: called with one line per epoch (on process 0 only); ``None`` for silence.
    stopper: a (possibly restored) stopper; by default a fresh one from ``config``.
    on_epoch_end: called as ``(epoch, metrics, state, stopper)`` after each epoch (after the
      epoch's checkpoint was started), e.g. to report to a tuner.
    mesh: train data-parallel over this mesh (:func:`merjax.parallel.resolve_mesh`); state
      and key are replicated on it. None trains with the plain single-device step.
    workdir: checkpoint every epoch here (orbax) and, when the directory already holds a
      checkpoint of the same settings, resume from it exactly (:mod:`merjax.train.checkpoint`).
      A finished run is returned from its last checkpoint without training.
    max_to_keep: how many epoch checkpoints ``workdir`` keeps.

  Returns:
    A :class:`FitResult` whose ``state`` holds the weights of the best validation epoch.
  """
  if jax.process_index() != 0:
    log = None
  stopper = stopper or EarlyStopping(patience=config.patience, max_epochs=config.max_epochs,
                                     train_accuracy_stop=config.train_accuracy_stop)
  history: list[dict[str, float]] = []
  best_state = _host_copy(state)
  epoch = stopper.epochs_seen
  checkpointer = None
  if workdir is not None:
    from merjax.train.checkpoint import Checkpointer, restore_run  # orbax is heavy: load late

    settings = {"stage": stage, **config.to_dict()}
    checkpointer = Checkpointer(workdir, max_to_keep=max_to_keep, config=settings)
    restored = restore_run(workdir, state=state, rng=rng, config=settings, missing_ok=True)
    if restored is not None:
      state, best_state, rng = restored.state, restored.best_state, restored.rng
      stopper, history, epoch = restored.stopper, restored.history, restored.next_epoch
      if log is not None:
        log(f"[{stage}] resumed from {workdir} after epoch {epoch}")
  if mesh is None:
    train_step = jit_train_step
    state = jax.device_put(state)
  else:
    train_step = mesh_train_step(mesh)
    state, rng = parallel.replicate((state, rng), mesh)
    if log is not None:
      log(f"[{stage}] data-parallel over {parallel.data_size(mesh)} devices"
          + (f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""))
  try:
    while stopper.stop_reason is None:
      start = time.perf_counter()
      per_step = []
      batches = train_batches(epoch)
      if mesh is not None:  # host rows become global arrays, two batches ahead of the step
        batches = parallel.prefetch_to_mesh(batches, mesh)
      for batch in batches:
        state, metrics = train_step(state, batch, rng)
        per_step.append(metrics)
      if not per_step:
        raise MerjaxError(f"stage {stage}: the training split yielded no batches")
      train = sum_metrics(per_step)
      _check_health(train, stage=stage, epoch=epoch)
      val, _ = evaluate_batches(state, val_batches(), mesh=mesh)
      stopper.update(train_accuracy=train["accuracy"], val_accuracy=val["accuracy"])
      if stopper.improved:
        best_state = _host_copy(state)
      record = {"epoch": epoch + 1, **{f"train_{k}": v for k, v in train.items()},
                "val_loss": val["loss"], "val_accuracy": val["accuracy"],
                "seconds": time.perf_counter() - start}
      history.append(record)
      if log is not None:
        log(f"[{stage}] epoch {epoch + 1:3d}/{config.max_epochs}  loss {train['loss']:.4f}  "
            f"acc {train['accuracy']:.3f}  val_loss {val['loss']:.4f}  "
            f"val_acc {val['accuracy']:.3f}{'*' if stopper.improved else ' '}  "
            f"|g| {train['grad_norm']:.3g}  ({record['seconds']:.1f}s)")
      if checkpointer is not None:
        checkpointer.save(next_epoch=epoch + 1, state=state, best_state=best_state, rng=rng,
                          stopper=stopper, history=history)
      if on_epoch_end is not None:
        on_epoch_end(epoch, record, state, stopper)
      epoch += 1
  finally:
    if checkpointer is not None:
      checkpointer.close()
  if log is not None:
    log(f"[{stage}] stopped: {stopper.stop_reason}; best epoch {stopper.best_epoch + 1} "
        f"(val_acc {stopper.best_accuracy:.3f})")
  return FitResult(state=jax.device_put(best_state), history=history,
                   best_epoch=stopper.best_epoch, best_val_accuracy=stopper.best_accuracy,
                   stop_reason=stopper.stop_reason)
