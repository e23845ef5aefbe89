"""Work split across the processes of a multi-host run, and values proven equal on all of them.

Per-example host work (handcrafted features, inputs read from the store) is done by one
process only: process ``p`` of ``P`` takes the p-th of ``P`` contiguous, near-equal blocks of
the examples (:func:`process_share`), and :func:`allgather_rows` gives every process all rows
in the original order. Anything fitted from those rows is then the same computation on the
same bytes on every process, and :func:`assert_same_on_every_process` proves it by comparing
a SHA-256 of the fitted values across processes. On one process everything is local.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from merjax.errors import MerjaxError


def process_share(n: int) -> np.ndarray:
  """Indices of the examples this process handles [shape=(about n / process_count,)]."""
  if n < 0:
    raise MerjaxError(f"cannot share {n} examples")
  return np.array_split(np.arange(n), jax.process_count())[jax.process_index()]


def allgather_rows(local: np.ndarray, *, n: int) -> np.ndarray:
  """Every process's rows for its :func:`process_share` of ``n`` examples, in example order.

  Args:
    local: this process's rows [shape=(len(process_share(n)), ...)]; same trailing shape and
      dtype on every process.
    n: the number of examples.

  Returns:
    [shape=(n, ...)], byte-identical on every process (exchanged as raw bytes, so float64 or
    any other dtype arrives unchanged).
  """
  local = np.ascontiguousarray(local)
  sizes = [len(block) for block in np.array_split(np.arange(n), jax.process_count())]
  if len(local) != sizes[jax.process_index()]:
    raise MerjaxError(f"process {jax.process_index()} computed {len(local)} rows for its share "
                      f"of {sizes[jax.process_index()]}")
  if jax.process_count() == 1:
    return local
  from jax.experimental import multihost_utils
  row_bytes = int(np.prod(local.shape[1:], dtype=np.int64)) * local.dtype.itemsize
  padded = np.zeros((max(sizes), row_bytes), np.uint8)
  padded[:len(local)] = local.reshape(len(local), -1).view(np.uint8).reshape(len(local), -1)
  gathered = np.asarray(multihost_utils.process_allgather(padded))  # [P, max(sizes), row_bytes]
  rows = np.concatenate([gathered[p, :size] for p, size in enumerate(sizes)])
  return np.ascontiguousarray(rows).view(local.dtype).reshape((n, *local.shape[1:]))


def map_per_process(fn: Callable[[np.ndarray], np.ndarray], n: int) -> np.ndarray:
  """``fn(indices) -> rows`` run by each process on its share only; all rows on every process.

  Args:
    fn: computes the rows [shape=(len(indices), ...)] of the given example indices.
    n: the number of examples.

  Returns:
    [shape=(n, ...)] in example order, identical on every process.
  """
  return allgather_rows(np.asarray(fn(process_share(n))), n=n)


def _feed(digest, value: Any) -> None:
  if isinstance(value, dict):
    digest.update(b"{")
    for key in sorted(value, key=str):
      _feed(digest, str(key))
      _feed(digest, value[key])
    digest.update(b"}")
  elif isinstance(value, (list, tuple)):
    digest.update(b"[")
    for item in value:
      _feed(digest, item)
    digest.update(b"]")
  elif isinstance(value, (np.ndarray, np.generic, jax.Array)):
    array = np.ascontiguousarray(np.asarray(value))
    digest.update(f"a{array.dtype.str}{array.shape}".encode())
    digest.update(array.tobytes())
  elif isinstance(value, float):
    digest.update(b"f" + np.float64(value).tobytes())  # exact, also for nan and -0.0
  elif value is None or isinstance(value, (bool, int, str)):
    digest.update(f"{type(value).__name__}:{value!r}".encode())
  else:
    raise MerjaxError(f"cannot fingerprint a {type(value).__name__}")


def fingerprint(value: Any) -> str:
  """SHA-256 (hex) of nested dicts, lists, numbers, strings and arrays, bit-exact."""
  digest = hashlib.sha256()
  _feed(digest, value)
  return digest.hexdigest()


def assert_same_on_every_process(value: Any, *, what: str) -> str:
  """Proves ``value`` bit-identical on every process (compares :func:`fingerprint` s).

  Args:
    value: what :func:`fingerprint` accepts.
    what: its name, for the error.

  Returns:
    The fingerprint.

  Raises:
    MerjaxError: the processes hold different values.
  """
  digest = fingerprint(value)
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    mine = np.frombuffer(bytes.fromhex(digest), np.uint8)
    every = np.asarray(multihost_utils.process_allgather(mine))
    differ = [p for p in range(len(every)) if not np.array_equal(every[p], every[0])]
    if differ:
      raise MerjaxError(f"{what} differs across processes (processes {differ} differ from "
                        "process 0); every process must read the same data and settings")
  return digest


def fit_feature_preprocessor(raw_train: np.ndarray, names: Sequence[str], **kwargs):
  """The training split's feature preprocessing, fitted once and proven equal everywhere.

  Args:
    raw_train: the whole training split's raw features [shape=(n_train, n_features)], e.g.
      from :func:`extract_features_per_process` (identical bytes on every process).
    names: the features' names.
    **kwargs: :class:`merjax.features.FeaturePreprocessor` options.

  Returns:
    The fitted :class:`merjax.features.FeaturePreprocessor`.

  Raises:
    MerjaxError: the fitted preprocessing differs between processes.
  """
  from merjax.features import FeaturePreprocessor
  preprocessor = FeaturePreprocessor(**kwargs).fit(raw_train, names)
  assert_same_on_every_process(preprocessor.to_dict(), what="the fitted feature preprocessing")
  return preprocessor


def _clip_of(clip: Callable[[int], np.ndarray], index: int) -> np.ndarray:
  return np.asarray(clip(index), np.float32)


def extract_features_per_process(song_ids: Sequence[str], clip: Callable[[int], np.ndarray], *,
                                 sample_rate: int, backend: str = "builtin",
                                 cache_dir: str | os.PathLike | None = None, workers: int = 1,
                                 progress: bool = False) -> np.ndarray:
  """Handcrafted features of every song, each process extracting only its own share.

  Args:
    song_ids: ids of the songs [n].
    clip: ``index -> waveform [shape=(samples,)]`` of song ``index`` (float32 in [-1, 1)); with
      a ``cache_dir`` it is called only for songs not cached yet, and with ``workers > 1`` it
      must be picklable.
    sample_rate: the clips' rate in Hz.
    backend: feature backend (see :data:`merjax.features.BACKENDS`).
    cache_dir: the shared per-song feature cache (each process adds its own songs).
    workers: extraction processes of each host.
    progress: show a progress bar.

  Returns:
    Raw features [shape=(n, n_features)] in ``song_ids`` order, identical on every process.
  """
  from merjax.features import extract_cached, extract_features

  def local(indices: np.ndarray) -> np.ndarray:
    if len(indices) == 0:
      from merjax.features import feature_names
      return np.zeros((0, len(feature_names(backend=backend, sample_rate=sample_rate))),
                      np.float32)
    if cache_dir is not None:
      items = [(str(song_ids[i]), functools.partial(_clip_of, clip, int(i))) for i in indices]
      return extract_cached(items, cache_dir=cache_dir, backend=backend,
                            sample_rate=sample_rate, workers=workers, progress=progress).values
    clips = [_clip_of(clip, int(i)) for i in indices]
    return extract_features(clips, sample_rate=sample_rate, backend=backend, workers=workers,
                            progress=progress)

  return map_per_process(lambda indices: np.asarray(local(indices), np.float32), len(song_ids))
