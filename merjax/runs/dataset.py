"""Train and evaluate on real datasets (the logic behind the CLI; predict: merjax.inference)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from merjax.config import STAGES, Config
from merjax.errors import MerjaxError
from merjax.runs.scores import score_and_report


def train_model(dataset: str, *, out: str | os.PathLike, config: Config,
                data_dir: str | os.PathLike | None = None, clips_per_quadrant: int = 40,
                workers: int | None = None, mesh: Any = "auto",
                workdir: str | os.PathLike | None = None,
                device_memory_gb: float | None = None,
                log: Callable[[str], Any] = print) -> dict[str, dict]:
  """Trains the three stages on a dataset and writes a self-contained model directory.

  Args:
    dataset: ``"synthetic"`` or a prepared dataset (``merge:audio_balanced``, ``4qaed``, ...).
    out: the model directory to create (it also receives the test report).
    config: the run's configuration.
    data_dir: the prepared store's root.
    clips_per_quadrant: size of the synthetic set, if ``dataset == "synthetic"``.
    workers: feature-extraction processes.
    mesh: devices to train on (see :func:`merjax.parallel.resolve_mesh`).
    workdir: per-epoch checkpoints of every stage; a rerun resumes from them.
    device_memory_gb: GiB per device a split may take on the devices; larger ones stream.
    log: progress sink.

  Returns:
    Test metrics of the CNN, the DNN and the hybrid.
  """
  from merjax import parallel
  from merjax.features.source import features_record
  from merjax.inference.directory import save_model
  from merjax.inputs.prepare import prepare_inputs
  from merjax.parallel.files import atomic_directory, check_writable
  from merjax.parallel.per_process import assert_same_on_every_process
  from merjax.train.stages import train_hybrid

  out = check_writable(out, what="--out")
  if out.exists() and (not out.is_dir() or any(out.iterdir())):
    raise MerjaxError(f"--out {out} exists and is not an empty directory")
  if workdir is not None:
    check_writable(workdir, what="--workdir")
  mesh = parallel.resolve_mesh(mesh)
  for stage in STAGES:  # refuse before any data is read, not at the stage that fails
    parallel.check_batch_size(config.stage(stage).batch_size, mesh,
                              what=f"the {stage} stage's batch size")
  if not parallel.is_primary():
    log = _silent  # one process reports; every process trains
  inputs = prepare_inputs(dataset, config=config, data_dir=data_dir,
                          clips_per_quadrant=clips_per_quadrant, workers=workers, log=log,
                          waveform_training=True)
  data = inputs.stage_data
  assert_same_on_every_process({"mel_mean": inputs.mel_mean, "mel_std": inputs.mel_std},
                               what="the log-mel statistics")
  model, fits = train_hybrid(data, config=config, mesh=mesh, mel_mean=inputs.mel_mean,
                             mel_std=inputs.mel_std, feature_preprocessor=inputs.preprocessor,
                             workdir=workdir, device_memory_gb=device_memory_gb, log=log)
  training = {stage: {"history": fit.history, "best_epoch": fit.best_epoch + 1,
                      "best_val_accuracy": fit.best_val_accuracy, "stop_reason": fit.stop_reason}
              for stage, fit in fits.items()}
  # Written under a temporary name and renamed when complete: a kill during the save leaves
  # no half-written --out, and the same command run again just works.
  with atomic_directory(out) as partial:
    save_model(model, partial, training={"dataset": dataset, "features": features_record(config),
                                         "stages": training})
    results = score_and_report(model, mels=data.mels["test"], features=data.features["test"],
                               labels=data.labels["test"], out=partial / "test",
                               title=f"{dataset}, test split", log=log)
  log(f"model written to {out}")
  return results


def _silent(message: str) -> None:
  del message


def evaluate_model(model_dir: str | os.PathLike, dataset: str, *,
                   data_dir: str | os.PathLike | None = None, split: str = "test",
                   out: str | os.PathLike | None = None, workers: int | None = None,
                   features: str | None = None, table: str | os.PathLike | None = None,
                   id_column: str | None = None,
                   log: Callable[[str], Any] = print) -> dict[str, dict]:
  """Scores a saved model on one split of a prepared dataset.

  Args:
    model_dir: a directory written by :func:`train_model`.
    dataset: a prepared dataset name.
    data_dir: the prepared store's root.
    split: ``test`` (default), ``validate`` or ``train``.
    out: where to write the report (default: ``MODEL_DIR/eval-DATASET-SPLIT``).
    workers: feature-extraction processes.
    features: ``--features`` as given; must be the model's own (None: the model's).
    table: for a model trained on a feature table, a table with the same columns to read
      instead of the recorded one (e.g. with rows for other songs).
    id_column: that table's song-id column.
    log: progress sink.

  Returns:
    Metrics of the CNN, the DNN and the hybrid.
  """
  from merjax.data.store import open_prepared
  from merjax.features.source import model_table
  from merjax.inference.directory import load_model
  from merjax.inputs.prepare import fit_clip_length, model_inputs

  model = load_model(model_dir)
  preprocessor = model.feature_preprocessor
  config = model_table(model.config, features=features, table=table, id_column=id_column,
                       expected_names=None if preprocessor is None else preprocessor.input_names)
  prepared = open_prepared(dataset, data_dir)
  index = np.flatnonzero(np.asarray(prepared.splits) == split)
  if len(index) == 0:
    raise MerjaxError(f"dataset {dataset!r} has no clips in split {split!r}")
  audio = model.config.audio
  if prepared.sample_rate != audio.sample_rate:
    raise MerjaxError(f"{prepared.name} is stored at {prepared.sample_rate} Hz but the model "
                      f"expects {audio.sample_rate} Hz; prepare it with --sample-rate "
                      f"{audio.sample_rate}")
  log(f"evaluating {model_dir} on {len(index)} {split} clips of {prepared.name}")
  waveforms = fit_clip_length(prepared.waveforms(index), audio.clip_samples)
  mels, inputs = model_inputs(model, waveforms, workers=workers, config=config,
                             song_ids=np.asarray(prepared.song_ids)[index])
  safe_name = dataset.replace(":", "_").replace("/", "_")
  out = Path(out) if out is not None else Path(model_dir) / f"eval-{safe_name}-{split}"
  results = score_and_report(model, mels=mels, features=inputs,
                             labels=np.asarray(prepared.labels)[index], out=out,
                             title=f"{dataset}, {split} split", log=log)
  log(f"report written to {out}")
  return results
