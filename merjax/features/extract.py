"""Feature extraction for many clips: worker processes, a progress bar and a per-song cache.

:func:`extract_features` maps an audio backend over in-memory waveforms. :func:`extract_cached`
takes ``(song_id, load)`` pairs instead, where ``load()`` returns the waveform, so it needs no
knowledge of any dataset reader; every song's features are stored as one ``.npy`` file under
``cache_dir/<backend>-<key>/``, where ``key`` hashes the backend's version and settings. An
interrupted run resumes where it stopped, and a changed backend never reads stale features.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import io
import json
import multiprocessing
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np

from merjax.errors import MerjaxError
from merjax.features.backends import audio_backend, backend_config, backend_key, feature_names
from merjax.features.featureset import FeatureSet, repeated

Source: TypeAlias = np.ndarray | Callable[[], np.ndarray]


def _single_thread() -> None:
  # Worker processes already use every core; nested BLAS/OpenMP threads only compete.
  from threadpoolctl import threadpool_limits
  threadpool_limits(1)


def _extract_one(backend: str, sample_rate: int, source: Source) -> np.ndarray:
  y = source() if callable(source) else source
  y = np.asarray(y, np.float32)
  if y.ndim != 1 or len(y) == 0:
    raise MerjaxError(f"expected one non-empty mono waveform, got shape {y.shape}")
  return audio_backend(backend).extract(y, sample_rate=sample_rate)


def _map(backend: str, sample_rate: int, sources: Sequence[Source], *, workers: int,
         progress: bool, total: int | None = None, initial: int = 0,
         labels: Sequence[str] | None = None) -> Iterator[tuple[int, np.ndarray]]:
  """Yields ``(index, features)`` for every source, in completion order."""
  from tqdm.auto import tqdm

  bar = tqdm(total=total if total is not None else len(sources), initial=initial,
             desc=f"features ({backend})", unit="clip", disable=not progress, file=sys.stderr)

  def failed(i: int, error: MerjaxError) -> MerjaxError:
    what = f"song {labels[i]}" if labels is not None else f"clip {i}"
    return MerjaxError(f"{backend} feature extraction failed for {what}: {error}")

  with bar:
    if workers <= 1 or len(sources) <= 1:
      for i, source in enumerate(sources):
        try:
          yield i, _extract_one(backend, sample_rate, source)
        except MerjaxError as error:
          raise failed(i, error) from None
        bar.update()
      return
    # The first clip here, before any worker starts: it compiles librosa's numba functions
    # and writes their on-disk cache once. Workers compiling them at the same time can write
    # mismatched cache files (numba issue 10128) that crash every later run with SIGSEGV.
    try:
      yield 0, _extract_one(backend, sample_rate, sources[0])
    except MerjaxError as error:
      raise failed(0, error) from None
    bar.update()
    context = multiprocessing.get_context("spawn")  # never fork a process that may hold JAX
    pool = concurrent.futures.ProcessPoolExecutor(
        max_workers=min(workers, len(sources) - 1), mp_context=context,
        initializer=_single_thread)
    finished = False
    try:
      futures = {pool.submit(_extract_one, backend, sample_rate, s): i
                 for i, s in enumerate(sources) if i > 0}
      for future in concurrent.futures.as_completed(futures):
        i = futures[future]
        try:
          yield i, future.result()
        except MerjaxError as error:
          raise failed(i, error) from None
        bar.update()
      finished = True
    finally:
      # On an error or Ctrl-C, drop the queued clips instead of extracting them first.
      pool.shutdown(wait=finished, cancel_futures=not finished)


def _check_workers(workers: int) -> int:
  if not isinstance(workers, int) or workers < 1:
    raise MerjaxError(f"workers must be a positive integer, got {workers!r}")
  return workers


def extract_features(waveforms: np.ndarray | Sequence[np.ndarray], *, sample_rate: int = 16000,
                     backend: str = "builtin", workers: int = 1,
                     progress: bool = False) -> np.ndarray:
  """Extracts handcrafted features of every clip.

  Args:
    waveforms: mono clips [shape=(n, samples)], or a sequence of 1-D clips of any lengths.
    sample_rate: their sampling rate in Hz.
    backend: ``"builtin"`` or ``"essentia"`` (see :data:`merjax.features.BACKENDS`).
    workers: worker processes (1 extracts in this process). They are started with ``spawn``
      (safe next to JAX), so a script that uses them needs the ``if __name__ == "__main__":``
      guard.
    progress: show a progress bar on stderr.

  Returns:
    [shape=(n, n_features)] float32, columns in ``feature_names(backend=...)`` order.
  """
  _check_workers(workers)
  if isinstance(waveforms, np.ndarray) and waveforms.ndim != 2:
    raise MerjaxError(f"waveforms must be [clips, samples], got shape {waveforms.shape}")
  names = feature_names(backend=backend, sample_rate=sample_rate)
  out = np.empty((len(waveforms), len(names)), np.float32)
  for i, values in _map(backend, sample_rate, list(waveforms), workers=workers,
                        progress=progress):
    out[i] = values
  return out


def _filename(song_id: str) -> str:
  if re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,100}", song_id):
    return f"{song_id}.npy"
  return f"id-{hashlib.sha1(song_id.encode()).hexdigest()}.npy"  # unsafe as a file name


def cache_directory(cache_dir: str | os.PathLike, *, backend: str = "builtin",
                    sample_rate: int = 16000) -> Path:
  """Where :func:`extract_cached` keeps one backend's per-song features."""
  return Path(cache_dir) / f"{backend}-{backend_key(backend, sample_rate=sample_rate)}"


def extract_cached(items: Iterable[tuple[str, Source]], *, cache_dir: str | os.PathLike,
                   backend: str = "builtin", sample_rate: int = 16000, workers: int = 1,
                   progress: bool = False) -> FeatureSet:
  """Features of many songs, computed once per song and backend version, then read back.

  Args:
    items: ``(song_id, source)`` pairs; ``source`` is the waveform [shape=(samples,)] or a
      function returning it (called only when the song is not cached yet; with ``workers > 1``
      it runs in a worker process and must be picklable, e.g. a module-level function or a
      :func:`functools.partial` of one).
    cache_dir: root of the feature cache.
    backend: ``"builtin"`` or ``"essentia"``.
    sample_rate: sampling rate of the waveforms in Hz.
    workers: worker processes for the songs not cached yet.
    progress: show a progress bar on stderr.

  Returns:
    A :class:`FeatureSet` with the songs in the order of ``items``.
  """
  _check_workers(workers)
  items = list(items)
  song_ids = [str(song) for song, _ in items]
  duplicates = repeated(song_ids)
  if duplicates:
    raise MerjaxError(f"duplicate song ids: {', '.join(duplicates[:20])}")
  names = feature_names(backend=backend, sample_rate=sample_rate)
  directory = cache_directory(cache_dir, backend=backend, sample_rate=sample_rate)
  try:
    directory.mkdir(parents=True, exist_ok=True)
  except OSError as error:
    raise MerjaxError(f"cannot create the feature cache {directory}: {error}") from None
  info = directory / "backend.json"  # what the cached vectors mean, for people and tools
  if not info.exists():
    config: dict[str, Any] = backend_config(backend, sample_rate=sample_rate)
    _write_atomic(info, (json.dumps({"config": config, "names": names}, indent=1) + "\n").encode())

  values = np.empty((len(items), len(names)), np.float32)
  pending = []
  for i, song in enumerate(song_ids):
    path = directory / _filename(song)
    try:
      cached = np.load(path, allow_pickle=False)
      if cached.shape == (len(names),):
        values[i] = cached
        continue
    except (OSError, ValueError):
      pass  # not cached yet, or a damaged file: extract again
    pending.append(i)

  sources = [items[i][1] for i in pending]
  if workers > 1 and len(sources) > 1:
    sources = [_picklable(s) for s in sources]
  for j, row in _map(backend, sample_rate, sources, workers=workers, progress=progress,
                     total=len(items), initial=len(items) - len(pending),
                     labels=[song_ids[i] for i in pending]):
    i = pending[j]
    values[i] = row
    buffer = io.BytesIO()
    np.save(buffer, row)
    _write_atomic(directory / _filename(song_ids[i]), buffer.getvalue())
  return FeatureSet(np.array(song_ids), list(names), values, backend)


def _write_atomic(path: Path, data: bytes) -> None:
  """Writes via a temporary file, so an interrupted run never leaves a truncated entry."""
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  tmp.write_bytes(data)
  os.replace(tmp, path)


def _picklable(source: Source) -> Source:
  """``source`` itself if it can go to a worker, else the waveform it loads (loaded here)."""
  import pickle
  if isinstance(source, np.ndarray):
    return source
  try:
    pickle.dumps(source)
    return source
  except Exception:  # lambdas, closures, open handles: load in this process instead
    return np.asarray(source(), np.float32)
