"""The epoch loop with the paper's stopping rules and best-epoch weights.

Three parts, each on its own: :func:`run_epoch` (train over one epoch's batches, then
evaluate), :class:`WorkdirCheckpoint` (restore a run from its work dir and save it after
every epoch) and the hooks (:data:`EpochHook`: logging aside, what a caller plugs in after
each epoch, e.g. a tuner's report). :func:`fit` strings them together. Training always runs
over a data mesh; a mesh of one device costs nothing.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import jax
from jax.sharding import Mesh

from merjax import parallel
from merjax.config import TrainConfig
from merjax.errors import MerjaxError
from merjax.train.state import TrainState
from merjax.train.steps import mesh_eval_step, mesh_train_step, sum_metrics
from merjax.train.stopping import EarlyStopping

# Called after every epoch as ``hook(epoch, record, state, stopper)``: ``record`` is the
# epoch's history entry, ``stopper.improved`` tells whether it is the new best.
EpochHook = Callable[[int, dict[str, float], TrainState, EarlyStopping], Any]


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


@dataclasses.dataclass
class Progress:
  """Where a run stands between two epochs: what a work-dir checkpoint saves and restores.

  Attributes:
    state: the live train state (replicated on the mesh while training).
    best_state: a host copy of the best validation epoch's state.
    rng: the run's dropout key.
    stopper: the stopping rules' state.
    history: one record per finished epoch.
    epoch: the next epoch to run (0-based).
  """

  state: TrainState
  best_state: TrainState
  rng: jax.Array
  stopper: EarlyStopping
  history: list[dict[str, float]]
  epoch: int


def evaluate_batches(state: TrainState, batches: Iterable[dict], *, mesh: Mesh
                     ) -> dict[str, float]:
  """Loss and accuracy over padded, masked batches (only the sums leave the devices).

  Args:
    state: the model state, replicated on ``mesh``.
    batches: padded, masked batches (host-local slices are assembled on ``mesh``).
    mesh: the data mesh.

  Returns:
    ``{"loss", "accuracy"}`` over the real examples.
  """
  step = mesh_eval_step(mesh)
  return sum_metrics([step(state, batch) for batch in parallel.prefetch_to_mesh(batches, mesh)])


def _check_health(metrics: dict[str, float], *, stage: str, epoch: int) -> None:
  bad = {k: v for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)}
  if bad:
    raise TrainingDivergedError(
        f"stage {stage}, epoch {epoch + 1}: " + ", ".join(f"{k} is {v}" for k, v in bad.items())
        + " (try a smaller learning rate)")


def run_epoch(state: TrainState, *, train_batches: Iterable[dict],
              val_batches: Iterable[dict], rng: jax.Array, mesh: Mesh, stage: str,
              epoch: int) -> tuple[TrainState, dict[str, float], dict[str, float]]:
  """One epoch: a step per training batch, then the evaluation of the validation batches.

  Args:
    state: the train state, replicated on ``mesh`` (donated to the steps).
    train_batches: the epoch's batches, sharded along ``data`` or this process's rows of each
      global batch (assembled two batches ahead of the step).
    val_batches: padded, masked validation batches.
    rng: the run's dropout key, replicated (folded with the step inside the step).
    mesh: the data mesh.
    stage: the stage's name, for errors.
    epoch: the epoch's number (0-based), for errors.

  Returns:
    ``(state, train metrics, validation metrics)``; the training metrics hold ``loss``,
    ``accuracy``, ``grad_norm`` and ``param_norm``.

  Raises:
    TrainingDivergedError: a NaN or infinite training metric (naming stage and epoch).
    MerjaxError: the training split yielded no batch.
  """
  step = mesh_train_step(mesh)
  per_step = []
  for batch in parallel.prefetch_to_mesh(train_batches, mesh):
    state, metrics = step(state, batch, rng)
    per_step.append(metrics)
  if not per_step:
    raise MerjaxError(f"stage {stage}: the training split yielded no batches")
  train = sum_metrics(per_step)
  _check_health(train, stage=stage, epoch=epoch)
  return state, train, evaluate_batches(state, val_batches, mesh=mesh)


class WorkdirCheckpoint:
  """Restores a run from its work dir and saves it after every epoch (orbax).

  A work dir holds the checkpoints of one stage with one set of settings; restoring one of
  other settings raises MerjaxError (:mod:`merjax.train.checkpoint`).

  Args:
    workdir: the stage's work directory.
    stage: the stage's name (part of the recorded settings).
    config: the stage's training settings (recorded and compared on restore).
  """

  def __init__(self, workdir: str | os.PathLike, *, stage: str, config: TrainConfig):
    from merjax.train.checkpoint import Checkpointer  # orbax is heavy: load it when asked

    self.workdir = workdir
    self.settings = {"stage": stage, **config.to_dict()}
    # Opened before any restore: once the directory exists, opening it is a barrier that every
    # process of a multi-host run passes alike, so they all see the same checkpoints.
    self.checkpointer = Checkpointer(workdir, config=self.settings)

  def restore(self, progress: Progress) -> Progress | None:
    """The newest checkpoint's progress (shaped like ``progress``), or None when there is none."""
    from merjax.train.checkpoint import restore_run

    restored = restore_run(self.workdir, state=progress.state, rng=progress.rng,
                           config=self.settings, missing_ok=True)
    if restored is None:
      return None
    return Progress(state=restored.state, best_state=restored.best_state, rng=restored.rng,
                    stopper=restored.stopper, history=restored.history,
                    epoch=restored.next_epoch)

  def save(self, progress: Progress) -> None:
    """Starts saving ``progress`` (asynchronously; :meth:`close` waits)."""
    self.checkpointer.save(next_epoch=progress.epoch, state=progress.state,
                           best_state=progress.best_state, rng=progress.rng,
                           stopper=progress.stopper, history=progress.history)

  def close(self) -> None:
    self.checkpointer.close()


def _host_copy(state: TrainState) -> TrainState:
  # Donation invalidates the live buffers, so the best epoch is kept as a host copy.
  return jax.device_get(state)


def _epoch_line(stage: str, record: dict[str, float], *, max_epochs: int, improved: bool) -> str:
  return (f"[{stage}] epoch {record['epoch']:3d}/{max_epochs}  loss {record['train_loss']:.4f}  "
          f"acc {record['train_accuracy']:.3f}  val_loss {record['val_loss']:.4f}  "
          f"val_acc {record['val_accuracy']:.3f}{'*' if improved else ' '}  "
          f"|g| {record['train_grad_norm']:.3g}  ({record['seconds']:.1f}s)")


def fit(state: TrainState, *, train_batches: Callable[[int], Iterable[dict]],
        val_batches: Callable[[], Iterable[dict]], config: TrainConfig, rng: jax.Array,
        mesh: Mesh, stage: str = "train", log: Callable[[str], Any] | None = print,
        stopper: EarlyStopping | None = None, hooks: Sequence[EpochHook] = (),
        workdir: str | os.PathLike | None = None) -> FitResult:
  """Trains until the paper's stopping rules fire, and returns the best epoch's weights.

  Args:
    state: the initial train state.
    train_batches: ``epoch -> iterable of batches`` (shuffled per epoch), e.g. the ``epoch``
      of :func:`merjax.batches.split.split_batches`: batches sharded along ``data``, or this
      process's rows of each global batch (assembled with
      ``make_array_from_process_local_data``, two batches ahead). With device-resident batches
      the loop makes no implicit host-device transfer (it passes under
      ``jax.transfer_guard("disallow")``).
    val_batches: ``() -> iterable of padded, masked validation batches``.
    config: epochs cap, patience and the training-accuracy rule.
    rng: the run's dropout key (folded with the step inside :func:`train_step`).
    mesh: train data-parallel over this mesh (:func:`merjax.parallel.resolve_mesh`); state
      and key are replicated on it.
    stage: a name for log lines and errors (``"cnn"``, ``"dnn"``, ``"fusion"``).
    log: called with one line per epoch (on process 0 only); ``None`` for silence.
    stopper: a (possibly restored) stopper; by default a fresh one from ``config``.
    hooks: called after each epoch (after its checkpoint was started), see
      :data:`EpochHook`; e.g. a tuner's report.
    workdir: checkpoint every epoch here and, when the directory already holds a checkpoint
      of the same settings, resume from it exactly (:class:`WorkdirCheckpoint`). A finished
      run is returned from its last checkpoint without training.

  Returns:
    A :class:`FitResult` whose ``state`` holds the weights of the best validation epoch.
  """
  if jax.process_index() != 0:
    log = None
  stopper = stopper or EarlyStopping(patience=config.patience, max_epochs=config.max_epochs,
                                     train_accuracy_stop=config.train_accuracy_stop)
  progress = Progress(state=state, best_state=_host_copy(state), rng=rng, stopper=stopper,
                      history=[], epoch=stopper.epochs_seen)
  checkpoint = None if workdir is None else WorkdirCheckpoint(workdir, stage=stage,
                                                              config=config)
  try:
    restored = None if checkpoint is None else checkpoint.restore(progress)
    if restored is not None:
      progress = restored
      if log is not None:
        log(f"[{stage}] resumed from {workdir} after epoch {progress.epoch}")
    progress.state, progress.rng = parallel.replicate((progress.state, progress.rng), mesh)
    if log is not None and parallel.data_size(mesh) > 1:
      log(f"[{stage}] data-parallel over {parallel.data_size(mesh)} devices"
          + (f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""))
    while progress.stopper.stop_reason is None:
      start = time.perf_counter()
      progress.state, train, val = run_epoch(
          progress.state, train_batches=train_batches(progress.epoch), val_batches=val_batches(),
          rng=progress.rng, mesh=mesh, stage=stage, epoch=progress.epoch)
      progress.stopper.update(train_accuracy=train["accuracy"], val_accuracy=val["accuracy"])
      if progress.stopper.improved:
        progress.best_state = _host_copy(progress.state)
      record = {"epoch": progress.epoch + 1, **{f"train_{k}": v for k, v in train.items()},
                "val_loss": val["loss"], "val_accuracy": val["accuracy"],
                "seconds": time.perf_counter() - start}
      progress.history.append(record)
      if log is not None:
        log(_epoch_line(stage, record, max_epochs=config.max_epochs,
                        improved=progress.stopper.improved))
      progress.epoch += 1
      if checkpoint is not None:
        checkpoint.save(progress)
      for hook in hooks:
        hook(progress.epoch - 1, record, progress.state, progress.stopper)
  finally:
    if checkpoint is not None:
      checkpoint.close()
  stopper = progress.stopper
  assert stopper.stop_reason is not None  # the loop above runs until a rule stops it
  if log is not None:
    log(f"[{stage}] stopped: {stopper.stop_reason}; best epoch {stopper.best_epoch + 1} "
        f"(val_acc {stopper.best_accuracy:.3f})")
  return FitResult(state=jax.device_put(progress.best_state), history=progress.history,
                   best_epoch=stopper.best_epoch, best_val_accuracy=stopper.best_accuracy,
                   stop_reason=stopper.stop_reason)
