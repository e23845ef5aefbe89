"""Train, evaluate and predict on real datasets and files (the logic behind the CLI)."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from merjax.config import QUADRANTS, Config
from merjax.errors import MerjaxError

MODELS = ("cnn", "dnn", "hybrid")


def split_metrics(model, *, mels: np.ndarray, features: np.ndarray, labels: np.ndarray
                 ) -> dict[str, dict]:
  """Metrics of the CNN alone, the DNN alone and the hybrid on one split."""
  from merjax.evaluate import classification_metrics
  return {which: classification_metrics(labels, model.logits(mels=mels, features=features,
                                                            which=which).argmax(-1))
          for which in MODELS}


def train_model(dataset: str, *, out: str | os.PathLike, config: Config,
                data_dir: str | os.PathLike | None = None, clips_per_quadrant: int = 40,
                workers: int | None = None, mesh: Any = "auto",
                workdir: str | os.PathLike | None = None,
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
    log: progress sink.

  Returns:
    Test metrics of the CNN, the DNN and the hybrid.
  """
  from merjax.evaluate import metrics_table, write_report
  from merjax.model_dir import save_model
  from merjax.train.stages import train_hybrid
  from merjax.workflow import prepare_inputs

  out = Path(out)
  if out.exists() and (not out.is_dir() or any(out.iterdir())):
    raise MerjaxError(f"--out {out} exists and is not an empty directory")
  inputs = prepare_inputs(dataset, config=config, data_dir=data_dir,
                          clips_per_quadrant=clips_per_quadrant, workers=workers, log=log)
  data = inputs.stage_data
  model, fits = train_hybrid(data, config=config, mel_mean=inputs.mel_mean,
                             mel_std=inputs.mel_std, feature_preprocessor=inputs.preprocessor,
                             mesh=mesh, workdir=workdir, log=log)
  training = {stage: {"history": fit.history, "best_epoch": fit.best_epoch + 1,
                      "best_val_accuracy": fit.best_val_accuracy, "stop_reason": fit.stop_reason}
              for stage, fit in fits.items()}
  from merjax.features.source import features_record
  save_model(model, out, training={"dataset": dataset, "features": features_record(config),
                                   "stages": training})
  results = split_metrics(model, mels=data.mels["test"], features=data.features["test"],
                         labels=data.labels["test"])
  write_report(results, out / "test", title=f"{dataset}, test split")
  log(metrics_table(results, title=f"{dataset} test"))
  log(f"model written to {out}")
  return results


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
  from merjax.evaluate import metrics_table, write_report
  from merjax.model_dir import load_model
  from merjax.workflow import fit_clip_length, model_inputs

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
  results = split_metrics(model, mels=mels, features=inputs,
                         labels=np.asarray(prepared.labels)[index])
  safe_name = dataset.replace(":", "_").replace("/", "_")
  out = Path(out) if out is not None else Path(model_dir) / f"eval-{safe_name}-{split}"
  write_report(results, out, title=f"{dataset}, {split} split")
  log(metrics_table(results, title=f"{dataset} {split}"))
  log(f"report written to {out}")
  return results


@dataclasses.dataclass
class Prediction:
  """One file's outcome: the quadrant and its probabilities, or the reason it failed."""

  path: str
  quadrant: str | None = None
  probabilities: dict[str, float] | None = None
  duration_seconds: float | None = None
  error: str | None = None


def predict_files(paths: Sequence[str | os.PathLike], *, model_dir: str | os.PathLike,
                  which: str = "hybrid", workers: int | None = None) -> list[Prediction]:
  """Predicts the quadrant of each audio file; undecodable files are reported, not fatal.

  Args:
    paths: audio files (MP3, WAV, FLAC, OGG, ...).
    model_dir: a directory written by :func:`train_model`.
    which: ``hybrid`` (default), ``cnn`` or ``dnn``.
    workers: feature-extraction processes.

  Returns:
    One :class:`Prediction` per path, in order.
  """
  import jax

  from merjax.audio.io import load_audio
  from merjax.model_dir import load_model
  from merjax.workflow import model_inputs

  model = load_model(model_dir)
  audio = model.config.audio
  predictions = [Prediction(path=os.fspath(p)) for p in paths]
  clips, decoded = [], []
  for prediction in predictions:
    try:
      clip = load_audio(prediction.path, sample_rate=audio.sample_rate,
                        clip_seconds=audio.clip_seconds)
    except MerjaxError as error:
      prediction.error = str(error)
      continue
    prediction.duration_seconds = clip.duration_seconds
    clips.append(clip.waveform)
    decoded.append(prediction)
  if clips:
    mels, features = model_inputs(model, np.stack(clips), workers=workers, progress=False)
    probabilities = np.asarray(jax.nn.softmax(model.logits(mels=mels, features=features,
                                                           which=which), axis=-1))
    for prediction, probs in zip(decoded, probabilities):
      prediction.quadrant = QUADRANTS[int(np.argmax(probs))]
      prediction.probabilities = {q: float(p) for q, p in zip(QUADRANTS, probs)}
  return predictions


def format_predictions(predictions: Sequence[Prediction], *, as_json: bool) -> str:
  if as_json:
    return json.dumps([dataclasses.asdict(p) for p in predictions], indent=2)
  lines = []
  for p in predictions:
    if p.error is not None:
      lines.append(f"{p.path}: error: {p.error}")
    else:
      probs = "  ".join(f"{q} {v:.2f}" for q, v in p.probabilities.items())
      lines.append(f"{p.path}: {p.quadrant}  ({probs})")
  return "\n".join(lines)
