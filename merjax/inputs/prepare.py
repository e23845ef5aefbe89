"""From a dataset name to the three stages' inputs: the path shared by demo, train, tune and
the experiment runners.

``prepare_inputs("synthetic", ...)`` generates the embedded synthetic quadrant data;
any other name (``merge:audio_balanced``, ``4qaed``, ``folder:NAME``) is read from the
prepared store that ``merjax prepare`` writes. Normalisation statistics and the feature
preprocessing are fitted on the training split only.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from merjax.config import SPLITS, Config
from merjax.train.stages import StageData


@dataclasses.dataclass
class PreparedInputs:
  """Normalised model inputs per split, plus what inference needs to repeat the transform.

  Attributes:
    stage_data: log-mels (z-normalised), preprocessed features and labels per split; for the
      ``offline`` augmentation mode, ``cnn_train_*`` hold the five-fold CNN training set, for
      online augmentation and the ``waveforms`` pipeline ``cnn_training`` describes the CNN's
      training batches.
    waveforms: the raw clips per split (kept for online augmentation), or None.
    song_ids: song ids per split.
    mel_mean, mel_std: the training split's log-mel statistics.
    preprocessor: the fitted :class:`merjax.features.FeaturePreprocessor`.
    feature_names: names of the raw features.
  """

  stage_data: StageData
  waveforms: dict[str, np.ndarray] | None
  song_ids: dict[str, np.ndarray]
  mel_mean: float
  mel_std: float
  preprocessor: Any
  feature_names: list[str]


_CHUNK_CLIPS = 256  # clips per streamed chunk: bounds memory, amortises worker start-up


def fit_clip_length(waveforms: np.ndarray, size: int) -> np.ndarray:
  """Crops or zero-pads clips [shape=(n, samples)] at the end to ``size`` samples."""
  if waveforms.shape[1] >= size:
    return waveforms[:, :size]
  return np.pad(waveforms, ((0, 0), (0, size - waveforms.shape[1])))


def stream_waveforms(prepared, indices: np.ndarray, *, clip_samples: int,
                     chunk: int = _CHUNK_CLIPS) -> Iterator[np.ndarray]:
  """float32 clips of a prepared store, in ``indices`` order, through the grain pipeline.

  Every process reads every clip (no per-host sharding): the inputs are computed once and
  each process then takes its own rows of every global batch.
  """
  import grain

  from merjax.batches.loader import Loader, pcm_to_float
  loader = Loader(prepared, batch_size=min(chunk, len(indices)), indices=indices, shuffle=False,
                  transform=pcm_to_float, shard_options=grain.sharding.NoSharding())
  expected = iter(np.array_split(np.asarray(indices), np.arange(chunk, len(indices), chunk)))
  for batch in loader.epoch(0):
    real = np.asarray(batch["mask"]) > 0
    if not np.array_equal(np.asarray(batch["index"])[real], next(expected)):
      raise RuntimeError("the pipeline returned clips out of order")
    yield fit_clip_length(np.asarray(batch["waveform"])[real], clip_samples)


def _load_clips(dataset: str, *, config: Config, data_dir, clips_per_quadrant: int,
                log: Callable[[str], Any]):
  """Returns (waveform chunks, labels, splits, song_ids, feature cache dir or None)."""
  if dataset == "synthetic":
    from merjax.data.splits import stratified_split
    from merjax.data.synthetic import generate
    log(f"generating {4 * clips_per_quadrant} synthetic clips of {config.audio.clip_seconds:g} s "
        f"(data seed {config.data_seed})")
    data = generate(clips_per_quadrant=clips_per_quadrant, seconds=config.audio.clip_seconds,
                    sample_rate=config.audio.sample_rate, seed=config.data_seed)
    splits = stratified_split(data.labels, seed=config.data_seed)
    return ([data.waveforms], data.labels.astype(np.int32), splits, np.asarray(data.song_ids),
            None)
  from merjax.data.store import open_prepared
  from merjax.errors import MerjaxError
  prepared = open_prepared(dataset, data_dir)
  if prepared.sample_rate != config.audio.sample_rate:
    raise MerjaxError(f"{prepared.name} is stored at {prepared.sample_rate} Hz, the config asks "
                      f"for {config.audio.sample_rate} Hz")
  if prepared.clip_samples != config.audio.clip_samples:
    log(f"note: {prepared.name} stores {prepared.clip_samples / prepared.sample_rate:g} s clips; "
        f"they are fixed to {config.audio.clip_seconds:g} s")
  keep = np.flatnonzero(np.isin(prepared.splits, SPLITS))
  log(f"reading {len(keep)} clips of {prepared.name} through the grain pipeline")
  from merjax.features.datasets import features_directory
  chunks = stream_waveforms(prepared, keep, clip_samples=config.audio.clip_samples)
  return (chunks, np.asarray(prepared.labels)[keep].astype(np.int32),
          np.asarray(prepared.splits)[keep], np.asarray(prepared.song_ids)[keep],
          features_directory(prepared.name, data_dir=data_dir))


def clip_inputs(waveforms: np.ndarray, *, config: Config, workers: int | None = None,
                progress: bool = True, song_ids: np.ndarray | None = None,
                cache_dir: str | os.PathLike | None = None
                ) -> tuple[np.ndarray, np.ndarray, list[str]]:
  """Raw (unnormalised) log-mels and handcrafted features of clips.

  Args:
    waveforms: clips [shape=(n, samples)] at ``config.audio.sample_rate``.
    config: audio settings and the feature backend.
    workers: processes for feature extraction (default: all cores, at most 4).
    progress: show progress bars.
    song_ids: ids of the clips, with ``cache_dir``: features are then read from (or added to)
      the per-song cache that ``merjax features`` fills; with ``features_backend="table"``
      they select the table's rows (required).
    cache_dir: the dataset's feature directory.

  Returns:
    ``(log_mels [shape=(n, n_mels, frames)], features [shape=(n, n_features)], names)``.
  """
  from merjax.features import extract_cached, extract_features, feature_names
  from merjax.inputs.log_mel import log_mels
  from merjax.parallel.per_process import map_per_process

  workers = workers or min(4, os.cpu_count() or 1)
  # In a multi-host run each process computes the rows of its own share of the clips only;
  # every process then holds all rows, byte-identical (merjax.parallel.per_process).
  def share(array, rows: np.ndarray):
    return array[rows[0]:rows[-1] + 1] if len(rows) else array[:0]  # a view: shares are blocks

  mels = map_per_process(lambda rows: log_mels(share(waveforms, rows), audio=config.audio,
                                               progress=progress), len(waveforms))
  if config.features_backend == "table":  # the recorded table's rows (docs/method.md)
    from merjax.features.source import table_inputs
    return (mels, *table_inputs(config.features_table,
                                None if song_ids is None else list(song_ids)))

  def extract(rows: np.ndarray) -> np.ndarray:
    if cache_dir is not None:  # the per-song cache is shared: each process adds its songs
      return extract_cached(zip(share(song_ids, rows), share(waveforms, rows)),
                            cache_dir=cache_dir,
                            backend=config.features_backend,
                            sample_rate=config.audio.sample_rate, workers=workers,
                            progress=progress).values
    return extract_features(share(waveforms, rows), sample_rate=config.audio.sample_rate,
                            backend=config.features_backend, workers=workers,
                            progress=progress)

  raw = map_per_process(lambda rows: np.asarray(extract(rows), np.float32), len(waveforms))
  names = feature_names(backend=config.features_backend, sample_rate=config.audio.sample_rate)
  return mels, raw, list(names)


def model_inputs(model, waveforms: np.ndarray, *, workers: int | None = None,
                 progress: bool = True, song_ids: np.ndarray | None = None,
                 config: Config | None = None) -> tuple[np.ndarray, np.ndarray]:
  """The inference-time transform: what training did, with the model's fitted statistics.

  Args:
    model: a :class:`merjax.inference.artefact.HybridModel`.
    waveforms: clips [shape=(n, samples)] at the model's sample rate and clip length.
    workers: processes for feature extraction.
    progress: show progress bars.
    song_ids: the clips' song ids (needed by a model trained on a feature table).
    config: the model's config with another feature table
      (:func:`merjax.features.source.model_table`); default ``model.config``.

  Returns:
    ``(normalised log-mels, preprocessed features)``.
  """
  mels, raw, _ = clip_inputs(waveforms, config=config or model.config, workers=workers,
                             progress=progress, song_ids=song_ids)
  features = (raw if model.feature_preprocessor is None
              else model.feature_preprocessor.transform(raw))
  return model.normalise_mels(mels), np.asarray(features, np.float32)


def _cnn_training_inputs(train_waveforms: np.ndarray, train_labels: np.ndarray,
                         train_mels: np.ndarray, *, config: Config, mel_mean: float,
                         mel_std: float, log: Callable[[str], Any],
                         pipeline: str = "precomputed") -> dict[str, Any]:
  """The CNN's training input: the offline-augmented set (``cnn_train_mels``,
  ``cnn_train_labels``), or a description of the batches built per run (``cnn_training``:
  online augmentation, or the clips that the CNN's step augments itself for the ``waveforms``
  pipeline). Returns the :class:`StageData` fields to set."""
  from merjax.batches.augmented import OnlineTraining, WaveformTraining, offline_training_set

  augment = config.augment
  if pipeline == "waveforms":
    training = WaveformTraining(waveforms=train_waveforms, labels=train_labels,
                                audio=config.audio, augment=augment, mel_mean=mel_mean,
                                mel_std=mel_std)
    log(f"CNN trains from waveforms: {training.size} examples per epoch "
        f"({augment.mode} augmentation made on the devices, inside the training step)")
    return {"cnn_training": training}
  if augment.mode == "none" or not augment.transforms:
    return {}
  if augment.mode == "offline":
    mels, labels = offline_training_set(train_waveforms, train_labels, train_mels,
                                        audio=config.audio, augment=augment, mel_mean=mel_mean,
                                        mel_std=mel_std)
    log(f"offline augmentation ({', '.join(augment.transforms)}): CNN trains on "
        f"{len(labels)} clips")
    return {"cnn_train_mels": mels, "cnn_train_labels": labels}
  log(f"online augmentation ({', '.join(augment.transforms)}): fresh variants every epoch")
  return {"cnn_training": OnlineTraining(waveforms=train_waveforms, labels=train_labels,
                                         train_mels=train_mels, audio=config.audio,
                                         augment=augment, mel_mean=mel_mean, mel_std=mel_std)}


def prepare_inputs(dataset: str, *, config: Config, data_dir: str | os.PathLike | None = None,
                   clips_per_quadrant: int = 40, workers: int | None = None,
                   keep_waveforms: bool = False, log: Callable[[str], Any] = print,
                   waveform_training: bool = False) -> PreparedInputs:
  """Loads a dataset and computes every stage's inputs.

  Args:
    dataset: ``"synthetic"`` or a prepared dataset name (see :mod:`merjax.data.store`).
    config: audio, augmentation and feature settings (``config.data_seed`` seeds synthetic data).
    data_dir: the prepared store's root (ignored for synthetic data).
    clips_per_quadrant: size of the synthetic set.
    workers: processes for feature extraction (default: all cores, at most 4).
    keep_waveforms: keep the raw clips (needed for online augmentation).
    log: progress sink.
    waveform_training: the caller trains with :func:`merjax.train.train_hybrid`, which can
      train the CNN from waveforms: ``config.augment.pipeline`` is then honoured (``auto``:
      waveforms on accelerators when augmenting, see :mod:`merjax.batches.augmented`). Otherwise
      the CNN's training set is precomputed (``cnn_train_*``), as callers that batch it
      themselves (tuning) need.

  Returns:
    The :class:`PreparedInputs`.
  """
  from merjax.inputs.log_mel import mel_statistics
  from merjax.parallel.per_process import fit_feature_preprocessor

  chunks, labels, splits, song_ids, cache_dir = _load_clips(
      dataset, config=config, data_dir=data_dir, clips_per_quadrant=clips_per_quadrant, log=log)
  index = {name: np.flatnonzero(splits == name) for name in SPLITS}
  log("splits: " + ", ".join(f"{k} {len(v)}" for k, v in index.items()))
  missing = [name for name, idx in index.items() if len(idx) == 0]
  if missing:
    from merjax.errors import MerjaxError
    raise MerjaxError(f"dataset {dataset!r} has no clips in split(s) {missing}")

  augmenting = config.augment.mode != "none" and bool(config.augment.transforms)
  pipeline = "precomputed"
  if waveform_training:
    from merjax.batches.augmented import resolve_pipeline
    pipeline = resolve_pipeline(config.augment)
    if config.augment.pipeline == "auto" and not augmenting:
      pipeline = "precomputed"  # the log-mels are made anyway (statistics, validation)
  augmenting = augmenting or pipeline == "waveforms"
  mel_chunks: list[np.ndarray] = []
  raw_chunks: list[np.ndarray] = []
  kept: list[np.ndarray | None] = []
  start = 0
  for chunk in chunks:  # stream: only the clips that must stay in memory are kept
    chunk_mels, chunk_raw, names = clip_inputs(
        chunk, config=config, workers=workers, cache_dir=cache_dir,
        song_ids=song_ids[start:start + len(chunk)])
    start += len(chunk)
    mel_chunks.append(chunk_mels)
    raw_chunks.append(chunk_raw)
    kept.append(chunk if keep_waveforms or augmenting else None)
  mels, raw = np.concatenate(mel_chunks), np.concatenate(raw_chunks)
  kept_clips = [chunk for chunk in kept if chunk is not None]
  waveforms = np.concatenate(kept_clips) if kept_clips else None
  mel_mean, mel_std = mel_statistics(mels[index["train"]])
  mels = ((mels - mel_mean) / mel_std).astype(np.float32)
  log(f"log-mels {mels.shape[1:]} per clip; training mean {mel_mean:.2f} dB, std {mel_std:.2f}")
  preprocessor = fit_feature_preprocessor(raw[index["train"]], names)  # proven equal everywhere
  features = preprocessor.transform(raw).astype(np.float32)
  log(f"features: {raw.shape[1]} extracted, {features.shape[1]} kept after preprocessing")

  def by_split(array):
    return {name: array[idx] for name, idx in index.items()}

  cnn_inputs = {}
  if augmenting:
    assert waveforms is not None  # kept above whenever augmenting
    cnn_inputs = _cnn_training_inputs(
        waveforms[index["train"]], labels[index["train"]], mels[index["train"]], config=config,
        mel_mean=mel_mean, mel_std=mel_std, log=log, pipeline=pipeline)
  stage_data = StageData(mels=by_split(mels), features=by_split(features),
                         labels=by_split(labels), **cnn_inputs)
  return PreparedInputs(stage_data=stage_data,
                        waveforms=by_split(waveforms) if keep_waveforms else None,
                        song_ids=by_split(song_ids), mel_mean=mel_mean, mel_std=mel_std,
                        preprocessor=preprocessor, feature_names=list(names))
