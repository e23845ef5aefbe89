"""Features of a whole dataset by name, cached under the data directory.

``dataset_features("merge:audio_balanced", backend="builtin")`` extracts (or reads back) the
features of every song of a prepared store; ``"synthetic"`` names the generated quadrant set of
:mod:`merjax.data.synthetic`. The per-song cache lives in
``<data_dir>/features/<dataset>/<backend>-<key>/`` (see :func:`merjax.features.extract_cached`);
the ``table`` backend reads a CSV instead and checks that it covers every song.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import numpy as np

from merjax.errors import MerjaxError
from merjax.features.extract import extract_cached
from merjax.features.featureset import FeatureSet
from merjax.features.table import table_features

SYNTHETIC = "synthetic"


def _synthetic_waveform(quadrant: int, index: int, seconds: float, sample_rate: int,
                        seed: int) -> np.ndarray:
  from merjax.data.synthetic import clip
  return clip(quadrant, index, seconds=seconds, sample_rate=sample_rate, seed=seed)[0]


@functools.lru_cache(maxsize=4)
def _open_store(path: str):
  from merjax.data.store import PreparedDataset
  return PreparedDataset(path)


def _store_waveform(path: str, index: int) -> np.ndarray:
  return _open_store(path).waveform(index)  # one open store per worker process


def _data_dir(data_dir: str | os.PathLike | None) -> Path:
  if data_dir is not None:
    return Path(data_dir).expanduser().absolute()
  from merjax.data.store import default_data_dir
  return Path(default_data_dir())


def features_directory(dataset_key: str, *, data_dir: str | os.PathLike | None = None) -> Path:
  """``<data_dir>/features/<dataset_key>``, with the key made safe as a folder name."""
  return _data_dir(data_dir) / "features" / re.sub(r"[^A-Za-z0-9._-]+", "_", dataset_key)


def dataset_features(dataset: str, *, data_dir: str | os.PathLike | None = None,
                     backend: str = "builtin", table: str | os.PathLike | None = None,
                     id_column: str | None = None, workers: int = 1, progress: bool = False,
                     clips_per_quadrant: int = 40, seconds: float = 30.0,
                     sample_rate: int = 16000, seed: int = 0) -> tuple[FeatureSet, Path]:
  """Features of every song of a dataset, extracted once and cached per song.

  Args:
    dataset: a prepared dataset name (``merge:audio_balanced``, ``4qaed``, ``folder:NAME``;
      see :func:`merjax.data.store.open_prepared`) or ``"synthetic"``.
    data_dir: root of the prepared stores and of the feature cache (default:
      ``$MERJAX_DATA_DIR`` or ``~/merjax_data``).
    backend: ``"builtin"``, ``"essentia"`` or ``"table"``.
    table: the CSV for the ``table`` backend.
    id_column: the table's song-id column (default ``Song``, else its first column).
    workers: extraction processes.
    progress: show a progress bar on stderr.
    clips_per_quadrant, seconds, sample_rate, seed: the synthetic set (``dataset="synthetic"``
      only; a prepared store has its own sample rate).

  Returns:
    ``(features, directory)``: the :class:`FeatureSet` in the dataset's order, and the
    dataset's feature directory (the cache lives below it).
  """
  if dataset == SYNTHETIC:
    from merjax.data import synthetic
    if not isinstance(clips_per_quadrant, int) or clips_per_quadrant < 1:
      raise MerjaxError(f"clips_per_quadrant must be an integer >= 1, got {clips_per_quadrant!r}")
    if not seconds > 0:
      raise MerjaxError(f"seconds must be positive, got {seconds}")
    key = f"synthetic-v{synthetic.VERSION}-{seconds:g}s-{sample_rate}hz-seed{seed}"
    items = [(synthetic.song_id(q, i),
              functools.partial(_synthetic_waveform, q, i, seconds, sample_rate, seed))
             for q in range(4) for i in range(clips_per_quadrant)]
  else:
    from merjax.data.store import open_prepared
    store = open_prepared(dataset, data_dir)
    key, sample_rate = store.name, store.sample_rate
    items = [(str(song), functools.partial(_store_waveform, store.path, i))
             for i, song in enumerate(store.song_ids)]
  directory = features_directory(key, data_dir=data_dir)

  if backend == "table":
    if table is None:
      raise MerjaxError("the table backend needs the CSV of features (--table CSV)")
    return table_features(table, [song for song, _ in items], id_column=id_column), directory
  if table is not None:
    raise MerjaxError(f"--table is only used with the table backend, not {backend!r}")
  features = extract_cached(items, cache_dir=directory, backend=backend,
                            sample_rate=sample_rate, workers=workers, progress=progress)
  return features, directory
