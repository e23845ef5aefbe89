"""One stage's hyperparameter search on Ray Tune, and the record of its trials.

:func:`tune_stage` runs the searcher's trials (:func:`merjax.tune.trial.run_trial`) under
:class:`~merjax.tune.stopper.PaperStopper`, keeps every trial's best-epoch checkpoint, records
failed trials with their reason without stopping the search, and picks the trial with the
highest validation accuracy. The experiment lives in ``OUT/ray/<stage>``; a search
interrupted part-way is continued with ``resume=True`` (``Tuner.restore``): finished trials
are kept as they are, unfinished ones continue from their checkpoint, and the searcher (whose
state Ray saves with the experiment) proposes only the remaining trials.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from merjax.config import Config, TuneConfig
from merjax.errors import MerjaxError
from merjax.tune.space import KEYS
from merjax.tune.trial import StageArrays, TrialSetup

METRIC = "best_val_accuracy"
# Ray names a trial's directory <trainable>_<trial id>_<counter>_<params>_<date>.
_TRIAL_DIR = re.compile(r"_([0-9a-f]{8}|[0-9a-f]{5}_\d{5})_(\d+)_")
_HISTORY_KEYS = ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "seconds")


@dataclasses.dataclass
class TrialRecord:
  """One trial of a stage search.

  Attributes:
    number: 1 for the first trial (the lower end of every range), 2, ... in creation order.
    trial_id: Ray's trial id.
    hparams: ``{"optimizer", "learning_rate", "batch_size"}``.
    status: ``"TERMINATED"`` (finished), ``"ERROR"`` (failed) or another Ray status.
    epochs: epochs trained.
    best_epoch: the epoch (1-based) with the highest validation accuracy.
    best_val_accuracy: that accuracy, the objective.
    stop_reason: which stopping rule ended the trial.
    error: why the trial failed (NaN loss, out of memory, ...), or None.
    checkpoint: the directory of the trial's best-epoch checkpoint, or None.
    history: per-epoch metrics (epoch, losses, accuracies, seconds).
  """

  number: int
  trial_id: str
  hparams: dict[str, Any]
  status: str
  epochs: int = 0
  best_epoch: int | None = None
  best_val_accuracy: float | None = None
  stop_reason: str | None = None
  error: str | None = None
  checkpoint: str | None = None
  history: list[dict[str, float]] = dataclasses.field(default_factory=list)

  @property
  def succeeded(self) -> bool:
    return (self.error is None and self.checkpoint is not None
            and self.best_val_accuracy is not None)


@dataclasses.dataclass
class StageSearch:
  """The outcome of one stage's search: every trial and the chosen one."""

  stage: str
  searcher: str
  trials: list[TrialRecord]
  best_number: int
  experiment_path: str

  @property
  def best(self) -> TrialRecord:
    return next(t for t in self.trials if t.number == self.best_number)

  def best_variables(self) -> dict:
    """The best trial's model variables (its best epoch)."""
    from merjax.train.checkpoint import load_variables
    best = self.best
    if best.checkpoint is None:
      raise MerjaxError(f"trial {best.number} left no checkpoint")
    return load_variables(best.checkpoint)

  def to_dict(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_dict(cls, data: dict) -> StageSearch:
    trials = [TrialRecord(**t) for t in data["trials"]]
    return cls(**{**data, "trials": trials})

  def save(self, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
    return path

  @classmethod
  def load(cls, path: str | os.PathLike) -> StageSearch:
    path = Path(path)
    if not path.exists():
      raise MerjaxError(f"{path} does not exist: run that stage's search into this --out first")
    return cls.from_dict(json.loads(path.read_text()))


def _error_reason(error: BaseException | None) -> str | None:
  """The original exception's one-line message, without Ray's wrapping and traceback."""
  if error is None:
    return None
  cause = error
  # Ray's wrapped task errors chain the original exception through ``.cause``.
  while (inner := getattr(cause, "cause", None)) is not None and inner is not cause:
    cause = inner
  text = str(cause).strip()
  # Ray's task errors carry the remote traceback; the exception line is the last one.
  lines = [line for line in text.splitlines() if line.strip()]
  line = lines[-1].strip() if lines else type(cause).__name__
  return line if len(line) <= 300 else line[:297] + "..."


def _history(result) -> list[dict[str, float]]:
  frame = result.metrics_dataframe
  if frame is None or "epoch" not in frame:
    return []
  keep = [k for k in _HISTORY_KEYS if k in frame]
  # A trial resumed from its checkpoint reports some epochs again: keep the last of each.
  frame = frame[keep].dropna(subset=["epoch"]).drop_duplicates("epoch", keep="last")
  return [{k: float(v) for k, v in row.items()} for row in frame.sort_values("epoch").to_dict(
      "records")]


def _record(result) -> TrialRecord:
  name = Path(result.path).name
  match = _TRIAL_DIR.search(name)
  metrics = result.metrics or {}
  trial_id = metrics.get("trial_id") or (match.group(1) if match else name)
  number = int(match.group(2)) if match else 0  # renumbered from 1 by tune_stage
  # A trial that failed before its first report has no result yet, but Ray wrote its params.
  config = metrics.get("config") or _hparams_from_dir(result.path)
  history = _history(result)
  best = metrics.get(METRIC)
  error = _error_reason(result.error)
  return TrialRecord(
      number=number, trial_id=trial_id,
      hparams={k: config.get(k) for k in KEYS},
      status="ERROR" if error is not None else "TERMINATED",
      epochs=int(max((h["epoch"] for h in history), default=0)),
      best_epoch=metrics.get("best_epoch"),
      best_val_accuracy=None if best is None or not math.isfinite(best) else float(best),
      stop_reason=metrics.get("stop_reason"), error=error,
      checkpoint=None if result.checkpoint is None else result.checkpoint.path,
      history=history)


def _hparams_from_dir(path: str) -> dict:
  params = Path(path) / "params.json"
  return json.loads(params.read_text()) if params.exists() else {}


def choose_best(trials: Sequence[TrialRecord]) -> TrialRecord:
  """The trial with the highest best validation accuracy (the earliest on ties)."""
  usable = [t for t in trials if t.succeeded]
  if not usable:
    reasons = "; ".join(f"trial {t.number}: {t.error or t.status}" for t in trials)
    raise MerjaxError(f"every trial failed ({reasons or 'no trials ran'})")
  return max(sorted(usable, key=lambda t: t.number), key=lambda t: t.best_val_accuracy or 0.0)


def _progress_callback(stage: str, total: int, log: Callable[[str], Any] | None):
  from ray.tune import Callback

  class _Progress(Callback):
    """A tqdm bar over trials and one log line per finished or failed trial."""

    def __init__(self):
      self._bar = None

    def __getstate__(self):  # Ray pickles run configs; the bar stays behind
      return {}

    def __setstate__(self, state):
      self._bar = None

    def setup(self, **info):
      from tqdm.auto import tqdm
      self._bar = tqdm(total=total, desc=f"tune {stage}", unit="trial")

    def _tick(self, trials, trial, text: str) -> None:
      if self._bar is None:
        self.setup()
      # Trials finished before a resume count too.
      ended = sum(t.status in ("TERMINATED", "ERROR") or t is trial for t in trials)
      self._bar.update(max(1, ended - self._bar.n))
      if log is not None:
        self._bar.write(f"[{stage}] trial {trial.trial_id} {trial.config}: {text}")

    def on_trial_complete(self, iteration, trials, trial, **info):
      result = trial.last_result or {}
      self._tick(trials, trial, f"best val_acc {result.get(METRIC, float('nan')):.3f} at epoch "
                        f"{result.get('best_epoch')}, {result.get('stop_reason')}")

    def on_trial_error(self, iteration, trials, trial, **info):
      self._tick(trials, trial, "failed")

    def on_experiment_end(self, trials, **info):
      if self._bar is not None:
        self._bar.close()

  return _Progress()


# Ray's console output is replaced by a progress bar and per-trial lines; errors are recorded
# in the results table. A user's own setting of these variables wins.
_QUIET_RAY = {"RAY_AIR_NEW_OUTPUT": "0", "TUNE_PRINT_ALL_TRIAL_ERRORS": "0",
              # Checkpointing only improving epochs with num_to_keep=1 forces frequent
              # experiment snapshots on purpose: they make resuming lose nothing.
              "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "0"}


@contextlib.contextmanager
def _quiet_ray() -> Iterator[None]:
  added = [key for key in _QUIET_RAY if key not in os.environ]
  os.environ.update({key: _QUIET_RAY[key] for key in added})
  try:
    yield
  finally:
    for key in added:
      os.environ.pop(key, None)


def _tuner(stage: str, *, trainable, experiment: Path, config: Config, setup: TrialSetup,
           resume: bool, points_to_evaluate, log):
  from ray import tune

  from merjax.tune.searcher import make_searcher
  from merjax.tune.stopper import PaperStopper

  if tune.Tuner.can_restore(experiment):
    if not resume:
      raise MerjaxError(f"{experiment} already holds a {stage} search; pass --resume to "
                        f"continue it, or choose another --out")
    if log is not None:
      log(f"[{stage}] resuming the search in {experiment}")
    return tune.Tuner.restore(str(experiment), trainable, resume_unfinished=True,
                              resume_errored=False, restart_errored=False)
  return tune.Tuner(
      trainable,
      tune_config=tune.TuneConfig(
          search_alg=make_searcher(config.tune, metric=METRIC,
                                   points_to_evaluate=points_to_evaluate, log=log),
          num_samples=config.tune.trials, metric=METRIC, mode="max", reuse_actors=True),
      run_config=tune.RunConfig(
          name=stage, storage_path=str(experiment.parent), verbose=0,
          stop=PaperStopper.from_config(setup.train),
          checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
          failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
          callbacks=[_progress_callback(stage, config.tune.trials, log)]))


def stage_search_config(config: TuneConfig, stage: str) -> TuneConfig:
  """The search settings of one stage: a batch size fixed by ``--batch-size`` is not searched.

  Returns:
    ``config`` itself, or a copy whose batch-size choices are the one fixed size.
  """
  fixed = dict(config.fixed_batch_sizes).get(stage)
  return config if fixed is None else config.replace(batch_sizes=(fixed,))


def tune_stage(stage: str, *, data: StageArrays, config: Config, out_dir: str | os.PathLike,
               resume: bool = False, cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
               points_to_evaluate: Sequence[dict] | None = None,
               log: Callable[[str], Any] | None = print) -> StageSearch:
  """Searches one stage's optimizer, learning rate and batch size (Ray session required).

  Args:
    stage: ``"cnn"``, ``"dnn"`` or ``"fusion"``.
    data: the stage's training and validation inputs and labels.
    config: model sizes, the stage's stopping rules and seed (``config.stage(stage)``) and the
      search settings (``config.tune``: trials, searcher, start-up trials, space, concurrency).
    out_dir: the search's root; the Ray experiment goes to ``out_dir/ray/<stage>``.
    resume: continue an interrupted (or finished) search in ``out_dir`` instead of refusing.
    cpus_per_trial: CPUs Ray reserves per trial.
    gpus_per_trial: GPUs (or a fraction of one) Ray reserves per trial.
    points_to_evaluate: the first points to try (default: the lower end of every range).
    log: progress sink (``None`` for silence).

  Returns:
    The :class:`StageSearch`, also written to ``out_dir/<stage>/search.json``.
  """
  from ray import tune

  from merjax.tune.trial import run_trial

  experiment = Path(out_dir).absolute() / "ray" / stage
  config = config.replace(tune=stage_search_config(config.tune, stage))
  setup = TrialSetup(stage=stage, model=config.model, train=config.stage(stage),
                     gpus_per_trial=gpus_per_trial)
  trainable = tune.with_resources(tune.with_parameters(run_trial, setup=setup, data=data),
                                  {"cpu": cpus_per_trial, "gpu": gpus_per_trial})
  with _quiet_ray():
    grid = _tuner(stage, trainable=trainable, experiment=experiment, config=config, setup=setup,
                  resume=resume, points_to_evaluate=points_to_evaluate, log=log).fit()
  trials = sorted((_record(result) for result in grid), key=lambda t: t.number)
  for number, trial in enumerate(trials, start=1):
    trial.number = number
  best = choose_best(trials)
  search = StageSearch(stage=stage, searcher=config.tune.searcher, trials=trials,
                       best_number=best.number, experiment_path=str(experiment))
  stage_dir = Path(out_dir) / stage
  stage_dir.mkdir(parents=True, exist_ok=True)
  search.save(stage_dir / "search.json")
  if log is not None:
    log(f"[{stage}] best: trial {best.number} {best.hparams}, val_acc "
        f"{best.best_val_accuracy:.3f} at epoch {best.best_epoch}")
  return search
