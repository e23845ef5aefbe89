"""The paper's tuning protocol on one dataset: the three stage searches, chained.

The CNN and DNN searches are independent; the fusion search trains the fusion head on the
embeddings of the best CNN and the best DNN, frozen (inference mode, no gradients). The
trials train through the stage functions of ``merjax train`` (:mod:`merjax.train.stages`).
With the fusion stage done, the three best trials form a model directory (``OUT/model``,
readable by ``merjax evaluate`` and ``merjax predict``) that is scored on the test split.

Output layout::

    OUT/
      ray/<stage>/                the Ray Tune experiment: every trial and its checkpoint
      <stage>/search.json         every trial and the chosen one
      <stage>/trials.md|csv|png   the results table and the validation-accuracy curves
      best_hparams.md|json        the chosen hyperparameters per stage (like Table 2)
      model/                      the tuned hybrid (after the fusion stage)
      test/                       test metrics of the CNN, the DNN and the hybrid
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from merjax.config import STAGES, Config
from merjax.errors import MerjaxError
from merjax.parallel.platform import set_gpu_memory_defaults
from merjax.tune.search import StageSearch
from merjax.tune.space import apply_point


@dataclasses.dataclass
class TuneOutcome:
  """What :func:`tune_dataset` produced.

  Attributes:
    searches: the stage searches by stage: this run's, plus those earlier runs left in the
      same output directory (a fusion-only run builds on the CNN and DNN searches there).
    config: the run's config with each searched stage's chosen hyperparameters.
    model_dir: the tuned hybrid's model directory, once the fusion stage is done.
    test: test metrics of ``cnn``, ``dnn`` and ``hybrid``, once the fusion stage is done.
  """

  searches: dict[str, StageSearch]
  config: Config
  model_dir: Path | None = None
  test: dict[str, dict] | None = None


def tuned_config(config: Config, searches: dict[str, StageSearch]) -> Config:
  """``config`` with each searched stage's chosen optimizer, learning rate and batch size."""
  return config.replace(**{stage: apply_point(config.stage(stage), search.best.hparams)
                           for stage, search in searches.items()})


def best_hparams_table(searches: dict[str, StageSearch]) -> str:
  """The chosen hyperparameters per stage, laid out like the paper's Table 2."""
  lines = ["| Stage | Batch size | Optimizer | Learning rate | Val. accuracy | Trial |",
           "|---|---|---|---|---|---|"]
  for stage in STAGES:
    if stage in searches:
      best = searches[stage].best
      assert best.best_val_accuracy is not None  # the chosen trial succeeded
      lines.append(f"| {stage} | {best.hparams['batch_size']} | {best.hparams['optimizer']} | "
                   f"{best.hparams['learning_rate']:g} | {100 * best.best_val_accuracy:.2f}% | "
                   f"{best.number} of {len(searches[stage].trials)} |")
  return "\n".join(lines)


def _check_out(out: Path, stages: Sequence[str], resume: bool) -> None:
  if out.exists() and not out.is_dir():
    raise MerjaxError(f"--out {out} exists and is not a directory")
  if not resume:
    taken = [stage for stage in stages if (out / "ray" / stage).exists()]
    if taken:
      raise MerjaxError(f"--out {out} already holds the {', '.join(taken)} search(es); pass "
                        f"--resume to continue, or choose another --out")
  if "fusion" in stages:
    missing = [stage for stage in ("cnn", "dnn") if stage not in stages
               and not (out / stage / "search.json").exists()]
    if missing:
      raise MerjaxError(f"the fusion stage freezes the best CNN and DNN, but --out {out} has no "
                        f"{' or '.join(missing)} search: run those stages first (or --stage all)")


def tune_stages(inputs, *, config: Config, out_dir: str | os.PathLike,
                stages: Sequence[str] = STAGES, resume: bool = False,
                cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
                log: Callable[[str], Any] | None = print) -> dict[str, StageSearch]:
  """Runs the requested stage searches in order (inside a Ray session).

  Args:
    inputs: the :class:`merjax.inputs.prepare.PreparedInputs` of the dataset.
    config: the run's configuration.
    out_dir: the search's root directory.
    stages: a subset of ``("cnn", "dnn", "fusion")``; a fusion-only run reads the CNN and DNN
      searches already in ``out_dir``.
    resume: continue searches already in ``out_dir``.
    cpus_per_trial, gpus_per_trial: Ray resources of each trial.
    log: progress sink.

  Returns:
    The searches by stage (those of this run, plus the CNN and DNN ones a fusion run used).
  """
  from merjax.train.stages import frozen_embeddings, stage_splits
  from merjax.tune.report import write_stage_report
  from merjax.tune.search import tune_stage

  out_dir = Path(out_dir)
  data = inputs.stage_data
  searches: dict[str, StageSearch] = {}
  for stage in (s for s in STAGES if s in stages):
    embeddings = None
    if stage == "fusion":
      for branch in ("cnn", "dnn"):
        if branch not in searches:
          searches[branch] = StageSearch.load(out_dir / branch / "search.json")
      embeddings = frozen_embeddings(data, config=config, cnn=searches["cnn"].best_variables(),
                                     dnn=searches["dnn"].best_variables())
    searches[stage] = tune_stage(stage, data=stage_splits(data, stage, embeddings=embeddings),
                                 config=config, out_dir=out_dir, resume=resume,
                                 cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                                 log=log)
    write_stage_report(searches[stage], out_dir / stage)
  return searches


def tune_dataset(dataset: str, *, config: Config, out: str | os.PathLike,
                 data_dir: str | os.PathLike | None = None, stages: Sequence[str] = STAGES,
                 clips_per_quadrant: int = 40, workers: int | None = None,
                 resume: bool = False, address: str | None = None, num_cpus: int | None = None,
                 cpus_per_trial: float = 1.0, gpus_per_trial: float = 0.0,
                 log: Callable[[str], Any] = print) -> TuneOutcome:
  """Tunes the requested stages on a dataset; with the fusion stage, also builds and tests the
  tuned hybrid.

  Args:
    dataset: ``"synthetic"`` or a prepared dataset (``merge:audio_balanced``, ...).
    config: the run's configuration (``config.tune`` holds the search settings).
    out: the output directory (see the module docstring for its layout).
    data_dir: the prepared store's root.
    stages: which searches to run.
    clips_per_quadrant: size of the synthetic set.
    workers: feature-extraction processes.
    resume: continue an interrupted run in ``out``.
    address: a Ray cluster to join (``None``: embedded Ray on this machine).
    num_cpus: CPUs of the embedded Ray session (default: all cores).
    cpus_per_trial, gpus_per_trial: Ray resources of each trial.
    log: progress sink.

  Returns:
    The :class:`TuneOutcome`.
  """
  from merjax.inputs.prepare import prepare_inputs
  from merjax.tune.session import ray_session

  out = Path(out)
  unknown = [s for s in stages if s not in STAGES]
  if unknown or not stages:
    raise MerjaxError(f"stages must be among {STAGES}, got {list(stages)}")
  if cpus_per_trial <= 0 or gpus_per_trial < 0:
    raise MerjaxError(f"need cpus per trial > 0 and gpus per trial >= 0, got {cpus_per_trial} "
                      f"and {gpus_per_trial}")
  if config.augment.mode == "online" and "cnn" in stages:
    raise MerjaxError("the search supports --augment offline (the paper's x5 set) or none; "
                      "online augmentation draws its variants inside one training process")
  _check_out(out, stages, resume)
  if gpus_per_trial > 0:
    # The trials own the GPUs. The driver computes inputs and embeddings there too, but
    # takes memory only while it needs it: no pool held, freed buffers go back to the GPU.
    set_gpu_memory_defaults(preallocate="false", allocator="platform")
  with ray_session(address=address, num_cpus=num_cpus):
    inputs = prepare_inputs(dataset, config=config, data_dir=data_dir,
                            clips_per_quadrant=clips_per_quadrant, workers=workers, log=log)
    searches = tune_stages(inputs, config=config, out_dir=out, stages=stages, resume=resume,
                           cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                           log=log)
  for stage in STAGES:  # searches of earlier runs into the same --out complete the tables
    if stage not in searches and (out / stage / "search.json").exists():
      searches[stage] = StageSearch.load(out / stage / "search.json")
  tuned = tuned_config(config, searches)
  (out / "best_hparams.md").write_text(
      f"# Chosen hyperparameters: {dataset}\n\n{best_hparams_table(searches)}\n")
  (out / "best_hparams.json").write_text(json.dumps(
      {stage: {**s.best.hparams, "val_accuracy": s.best.best_val_accuracy,
               "trial": s.best.number} for stage, s in searches.items()}, indent=2) + "\n")
  outcome = TuneOutcome(searches=searches, config=tuned)
  if "fusion" in stages:
    outcome.model_dir, outcome.test = _tuned_model(dataset, inputs, searches, config=tuned,
                                                   out=out, log=log)
  return outcome


def _tuned_model(dataset: str, inputs, searches: dict[str, StageSearch], *, config: Config,
                 out: Path, log: Callable[[str], Any]) -> tuple[Path, dict[str, dict]]:
  from merjax.inference.artefact import HybridModel
  from merjax.inference.directory import save_model
  from merjax.runs.scores import score_and_report

  model = HybridModel(config=config, cnn=searches["cnn"].best_variables(),
                      dnn=searches["dnn"].best_variables(),
                      fusion=searches["fusion"].best_variables(), mel_mean=inputs.mel_mean,
                      mel_std=inputs.mel_std, feature_preprocessor=inputs.preprocessor)
  model_dir = out / "model"
  if (model_dir / "config.json").exists():  # a resumed run rewrites its own model directory
    shutil.rmtree(model_dir)
  training = {stage: {"trial": s.best.number, "hparams": s.best.hparams,
                      "best_epoch": s.best.best_epoch,
                      "best_val_accuracy": s.best.best_val_accuracy,
                      "stop_reason": s.best.stop_reason, "checkpoint": s.best.checkpoint}
              for stage, s in searches.items()}
  from merjax.features.source import features_record
  save_model(model, model_dir, training={"dataset": dataset, "tuned": True,
                                         "features": features_record(config),
                                         "stages": training})
  data = inputs.stage_data
  results = score_and_report(model, mels=data.mels["test"], features=data.features["test"],
                             labels=data.labels["test"], out=out / "test",
                             title=f"{dataset}, test split (tuned)", log=log)
  return model_dir, results
