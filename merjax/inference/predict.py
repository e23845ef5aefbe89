"""Predict a music library: streamed, parallel, song-level and resumable.

Worker processes decode the windows each song needs (:mod:`merjax.inference.songs`) and, for
``dnn`` and ``hybrid``, compute their handcrafted features; the main process packs windows of
consecutive songs into fixed-size batches for :func:`merjax.inference.artefact.forward`, which
computes the log-mel and the networks on the device (one batch in flight while the next is
packed), and averages each song's window probabilities. At most ``2 * workers + 2`` songs are
being decoded and at most two batches of windows wait for the device, so host and device memory
do not grow with the number of songs.

Order: songs are predicted and written in input order (arguments in the order given, folders
walked recursively in sorted order, a list file's lines in order); duplicates are predicted
once. With ``out``, each song's line is appended and flushed as soon as it is known, and a
rerun with the same ``out`` first drops a line cut short by a kill, then skips every song the
file already holds (failed ones included: delete their lines to retry them), so an interrupted
and resumed run ends with the same lines, in the same order, as an uninterrupted one.
"""

from __future__ import annotations

import collections
import concurrent.futures
import csv
import dataclasses
import functools
import io
import json
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from merjax.audio.io import AUDIO_EXTENSIONS
from merjax.config import QUADRANTS
from merjax.errors import MerjaxError
from merjax.inference.songs import DEFAULT_MAX_WINDOWS, SEGMENTS, SongWindows, silence_warning

WHICH = ("hybrid", "cnn", "dnn")
LIST_EXTENSIONS = (".txt", ".m3u", ".m3u8")
CSV_COLUMNS = ("path", "quadrant", *QUADRANTS, "duration_seconds", "which", "segment",
               "window_starts", "padded", "warning", "nan_features", "error",
               "window_probabilities")


@dataclasses.dataclass
class Prediction:
  """One song's outcome.

  Attributes:
    path: the file, as given (or as found under a given folder).
    quadrant: the predicted quadrant, or None if the song failed.
    probabilities: ``{"Q1": p, ...}``, the mean of the windows' probabilities.
    duration_seconds: the song's length.
    which: the classifier (``hybrid``, ``cnn`` or ``dnn``).
    segment: the segment policy.
    window_starts: start of each window in seconds.
    padded: the song is shorter than the model's clip and was zero-padded.
    warning: silent or near-silent input, or features that came out NaN; else None.
    nan_features: names of the handcrafted features that came out NaN in some window (they
      were replaced by the training median, as in training).
    error: why the song could not be predicted.
    window_probabilities: each window's probabilities [shape=(windows, 4)] (``per_window``).
  """

  path: str
  quadrant: str | None = None
  probabilities: dict[str, float] | None = None
  duration_seconds: float | None = None
  which: str | None = None
  segment: str | None = None
  window_starts: list[float] = dataclasses.field(default_factory=list)
  padded: bool = False
  warning: str | None = None
  nan_features: list[str] = dataclasses.field(default_factory=list)
  error: str | None = None
  window_probabilities: list[list[float]] | None = None

  def to_dict(self, *, per_window: bool = False) -> dict[str, Any]:
    record = dataclasses.asdict(self)
    if not per_window:
      record.pop("window_probabilities")
    return record


def collect_paths(inputs: Sequence[str | os.PathLike[str]]) -> list[str]:
  """The songs named by files, folders (recursive) and list files, in input order, once each.

  Args:
    inputs: audio files; folders (every file with an extension in
      :data:`merjax.audio.io.AUDIO_EXTENSIONS`, recursively, in sorted order); or ``.txt`` /
      ``.m3u`` / ``.m3u8`` lists of paths, one per line (blank lines and ``#`` comments
      skipped, relative paths relative to the list's folder).

  Returns:
    Paths as given or found; files that do not exist are kept (they are reported per song).
  """
  found: list[str] = []
  for item in (os.fspath(i) for i in inputs):
    if os.path.isdir(item):
      for root, dirs, files in os.walk(item):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files)
                  if os.path.splitext(f)[1].lower() in AUDIO_EXTENSIONS]
    elif item.lower().endswith(LIST_EXTENSIONS):
      try:
        lines = Path(item).read_text(encoding="utf-8").splitlines()
      except (OSError, UnicodeDecodeError) as error:
        raise MerjaxError(f"cannot read the list of paths {item}: {error}") from None
      base = os.path.dirname(item)
      found += [os.path.join(base, line.strip()) for line in lines
                if line.strip() and not line.lstrip().startswith("#")]
    else:
      found.append(item)
  seen: set[str] = set()
  unique = []
  for path in found:
    key = os.path.abspath(path)
    if key not in seen:
      seen.add(key)
      unique.append(path)
  return unique


class ResultsFile:
  """``--out``: a JSON Lines or CSV file of predictions that a rerun resumes.

  Args:
    path: ``*.jsonl`` or ``*.csv``.
    which, segment: the run's settings; a file written with others is refused.
    per_window: write each window's probabilities.
  """

  def __init__(self, path: str | os.PathLike, *, which: str, segment: str,
               per_window: bool = False):
    self.path = Path(path)
    self.format = self.path.suffix.lower().lstrip(".")
    if self.format not in ("jsonl", "csv"):
      raise MerjaxError(f"--out must end in .jsonl or .csv, got {self.path}")
    if self.path.is_dir():
      raise MerjaxError(f"--out {self.path} is a directory")
    parent = self.path.absolute().parent
    if not parent.is_dir():
      raise MerjaxError(f"--out {self.path}: folder {parent} does not exist")
    self.per_window = per_window
    self.done: set[str] = set()
    try:
      self._file = open(self.path, "a+", encoding="utf-8", newline="")
    except OSError as error:
      raise MerjaxError(f"cannot write --out {self.path}: {error.strerror}") from None
    try:
      self._lock()
      records = self._read_existing()
      for record in records:
        if (record.get("which"), record.get("segment")) != (which, segment):
          raise MerjaxError(
              f"--out {self.path} holds predictions made with --which {record.get('which')} "
              f"--segment {record.get('segment')}; use another --out for --which {which} "
              f"--segment {segment}")
        self.done.add(os.path.abspath(record["path"]))
    except BaseException:
      self._file.close()
      raise
    self._csv = None
    if self.format == "csv":
      self._csv = csv.DictWriter(self._file, fieldnames=CSV_COLUMNS, extrasaction="ignore")
      if self._file.tell() == 0:
        self._csv.writeheader()
        self._file.flush()

  def _lock(self) -> None:
    """One run writes a given ``--out`` at a time (an advisory lock, where the OS has one)."""
    try:
      import fcntl
    except ImportError:  # not on Windows
      return
    try:
      fcntl.flock(self._file.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      raise MerjaxError(f"--out {self.path} is being written by another merjax predict; "
                        "wait for it or choose another --out") from None

  def _read_existing(self) -> list[dict[str, Any]]:
    data = self.path.read_bytes()
    complete = data[:data.rfind(b"\n") + 1]
    if len(complete) != len(data):  # a line cut short by a kill: drop it
      self._file.truncate(len(complete))
    self._file.seek(0, os.SEEK_END)
    try:
      text = complete.decode("utf-8")
      if self.format == "jsonl":
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
      raise MerjaxError(f"--out {self.path} is not a {self.format.upper()} file of merjax "
                        f"predictions ({error})") from None
    reader = csv.DictReader(io.StringIO(text))
    if text and tuple(reader.fieldnames or ()) != CSV_COLUMNS:
      raise MerjaxError(f"--out {self.path} is not a merjax predictions CSV (its header is "
                        f"{','.join(reader.fieldnames or [])})")
    return list(reader)

  def write(self, prediction: Prediction) -> None:
    """Appends one song and flushes it to the operating system."""
    record = prediction.to_dict(per_window=self.per_window)
    if self._csv is None:
      self._file.write(json.dumps(record) + "\n")
    else:
      self._csv.writerow(_csv_row(record))
    self._file.flush()

  def close(self) -> None:
    self._file.close()


def _csv_row(record: dict[str, Any]) -> dict[str, Any]:
  probabilities = record.get("probabilities") or {}
  row = {k: v for k, v in record.items() if k in CSV_COLUMNS}
  row.update({q: probabilities.get(q, "") for q in QUADRANTS})
  row["window_starts"] = " ".join(f"{s:g}" for s in record["window_starts"])
  row["nan_features"] = ";".join(record["nan_features"])
  if record.get("window_probabilities") is not None:
    row["window_probabilities"] = json.dumps(record["window_probabilities"])
  return {k: ("" if v is None else v) for k, v in row.items()}


def format_text(prediction: Prediction) -> str:
  """One line: ``path: Q2  (Q1 0.10  Q2 0.70  Q3 0.15  Q4 0.05)`` plus marks and warnings."""
  p = prediction
  if p.error is not None:
    return f"{p.path}: error: {p.error}"
  probs = "  ".join(f"{q} {v:.2f}" for q, v in (p.probabilities or {}).items())
  marks = "  [padded]" if p.padded else ""
  if p.warning:
    marks += f"  warning: {p.warning}"
  return f"{p.path}: {p.quadrant}  ({probs}){marks}"


def _worker_init(parent: int) -> None:
  """One BLAS thread per worker; exit when the parent dies (a SIGKILL leaves no orphans)."""
  import threading
  import time

  from merjax.features.extract import _single_thread
  _single_thread()

  def watch() -> None:
    while os.getppid() == parent:
      time.sleep(0.5)
    os._exit(1)

  threading.Thread(target=watch, daemon=True).start()


def _decoded(paths: Sequence[str], read: Callable[[str], SongWindows], *, workers: int
             ) -> Iterator[SongWindows]:
  """``read(path)`` of every path, in order, with at most ``2 * workers + 2`` in flight.

  A file that kills its worker process (a decoder crash) fails alone: the songs that were in
  flight are retried one at a time in a fresh pool, and the one that crashes it again gets an
  error instead of stopping the run.
  """
  if workers <= 1:
    for path in paths:
      yield read(path)
    return
  context = multiprocessing.get_context("spawn")  # never fork a process that holds JAX

  def start() -> concurrent.futures.ProcessPoolExecutor:
    return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context,
                                                  initializer=_worker_init,
                                                  initargs=(os.getpid(),))

  pool = start()
  todo = collections.deque(paths)
  suspects: collections.deque = collections.deque()  # in flight when a worker died
  pending: collections.deque = collections.deque()   # (path, future, submitted alone)
  finished = False
  try:
    while True:
      if suspects:
        if not pending:
          path = suspects.popleft()
          pending.append((path, pool.submit(read, path), True))
      else:
        while todo and len(pending) < 2 * workers + 2:
          path = todo.popleft()
          pending.append((path, pool.submit(read, path), False))
      if not pending:
        break
      path, future, alone = pending.popleft()
      try:
        song = future.result()
      except concurrent.futures.process.BrokenProcessPool:
        pool.shutdown(wait=False, cancel_futures=True)
        pool = start()
        if not alone:
          suspects.extendleft(reversed([path] + [p for p, _, _ in pending]))
          pending.clear()
          continue
        song = SongWindows(path=path, error=f"{path}: the decoder crashed on this file (its "
                           "worker process died)")
      yield song
    finished = True
  finally:
    pool.shutdown(wait=finished, cancel_futures=not finished)


class _Song:
  """A song whose windows are on their way through the device."""

  def __init__(self, prediction: Prediction, windows: int):
    self.prediction = prediction
    self.probabilities = np.zeros((windows, len(QUADRANTS)), np.float32)
    self.missing = windows


class _DeviceBatches:
  """Packs windows into fixed-size batches for :func:`forward`, one batch in flight."""

  def __init__(self, model, *, which: str, batch_size: int, n_features: int | None):
    import jax
    audio = model.config.audio
    self.model, self.which, self.batch_size = model, which, batch_size
    self.variables = jax.device_put(model.variables(which=which))
    self.waveforms = (np.zeros((batch_size, audio.clip_samples), np.float32)
                      if which != "dnn" else None)
    self.features = (np.zeros((batch_size, n_features), np.float32)
                     if n_features is not None else None)
    self.owners: list[tuple[_Song, int]] = []
    self.in_flight: tuple[Any, list[tuple[_Song, int]]] | None = None

  def add(self, song: _Song, waveforms: np.ndarray, features: np.ndarray | None) -> None:
    for i in range(len(song.probabilities)):
      row = len(self.owners)
      if self.waveforms is not None:
        self.waveforms[row] = waveforms[i]
      if self.features is not None:
        assert features is not None, "a dnn/hybrid batch needs every window's features"
        self.features[row] = features[i]
      self.owners.append((song, i))
      if len(self.owners) == self.batch_size:
        self.dispatch()

  def dispatch(self) -> None:
    """Starts the device on the packed windows, then collects the previous batch."""
    from merjax.inference.artefact import forward
    launched = None
    if self.owners:
      batch: dict[str, Any] = {}
      if self.waveforms is not None:
        batch.update(waveforms=self.waveforms.copy(),
                     mel_mean=np.float32(self.model.mel_mean),
                     mel_std=np.float32(self.model.mel_std))
      if self.features is not None:
        batch["features"] = self.features.copy()
      logits = forward(self.variables, batch, which=self.which,
                       model_config=self.model.config.model, audio=self.model.config.audio)
      launched = (logits, self.owners)
      self.owners = []
    self.collect()
    self.in_flight = launched

  def collect(self) -> None:
    if self.in_flight is None:
      return
    logits, owners = self.in_flight
    self.in_flight = None
    logits = np.asarray(logits, np.float64)[:len(owners)]
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    for (song, i), p in zip(owners, probabilities):
      song.probabilities[i] = p
      song.missing -= 1

  def flush(self) -> None:
    self.dispatch()
    self.collect()


def _finish(song: _Song, *, per_window: bool) -> Prediction:
  p = song.prediction
  mean = song.probabilities.mean(axis=0)
  p.probabilities = {q: float(v) for q, v in zip(QUADRANTS, mean)}
  p.quadrant = QUADRANTS[int(np.argmax(mean))]
  if per_window:
    p.window_probabilities = [[float(v) for v in row] for row in song.probabilities]
  return p


def default_batch_size() -> int:
  """Windows per device batch when ``--batch-size`` is not given: 1 on CPU, 16 elsewhere.

  On CPU a batch brings no speed (XLA:CPU already spreads one window's convolutions over the
  cores) but costs memory faults: a window's largest activation is 15 MB (32 filters x 126 x
  936 float32), and XLA:CPU gets every buffer above glibc's 32 MB ``mmap`` threshold as fresh
  pages from the kernel on each call. Measured per window: about 0.035 s of CPU alone against
  0.065 s (0.03 s of it kernel time, about 11,000 page faults) in batches of 3 to 16.
  """
  import jax
  return 1 if jax.default_backend() == "cpu" else 16


def check_options(*, which: str, segment: str, hop_seconds: float | None, max_windows: int,
                  workers: int, batch_size: int | None) -> None:
  """Refuses bad prediction options in one line (named as the command line names them)."""
  if which not in WHICH:
    raise MerjaxError(f"--which must be one of {', '.join(WHICH)}, got {which!r}")
  if segment not in SEGMENTS:
    raise MerjaxError(f"--segment must be one of {', '.join(SEGMENTS)}, got {segment!r}")
  if hop_seconds is not None and not hop_seconds > 0:
    raise MerjaxError(f"--hop must be positive, got {hop_seconds}")
  for name, value in (("--max-windows", max_windows), ("--workers", workers),
                      ("--batch-size", batch_size)):
    if value is not None and not value >= 1:
      raise MerjaxError(f"{name} must be at least 1, got {value}")


def predict_songs(paths: Sequence[str], *, model, which: str = "hybrid",
                  segment: str = "windows", hop_seconds: float | None = None,
                  max_windows: int = DEFAULT_MAX_WINDOWS, per_window: bool = False,
                  workers: int = 1, batch_size: int | None = None) -> Iterator[Prediction]:
  """Predicts songs, yielding each one in input order as soon as it and those before it are done.

  Args:
    paths: audio files.
    model: a :class:`merjax.inference.artefact.HybridModel`.
    which: ``hybrid``, ``cnn`` or ``dnn``.
    segment: ``first``, ``middle`` or ``windows`` (see :mod:`merjax.inference.songs`).
    hop_seconds: the largest hop between windows (default: the model's clip length).
    max_windows: the cap on windows per song.
    per_window: keep each window's probabilities.
    workers: decoding (and feature) processes; 1 decodes in this process.
    batch_size: windows per device batch (default: :func:`default_batch_size`).

  Yields:
    One :class:`Prediction` per path.
  """
  from merjax.inference.songs import read_windows

  audio = model.config.audio
  check_options(which=which, segment=segment, hop_seconds=hop_seconds, max_windows=max_windows,
                workers=workers, batch_size=batch_size)
  hop_seconds = audio.clip_seconds if hop_seconds is None else hop_seconds
  batch_size = default_batch_size() if batch_size is None else batch_size
  backend, names = None, None
  if which != "cnn":
    from merjax.features.backends import feature_names
    backend = model.config.features_backend
    names = feature_names(backend=backend, sample_rate=audio.sample_rate)
  read = functools.partial(read_windows, sample_rate=audio.sample_rate,
                           clip_samples=audio.clip_samples, segment=segment,
                           hop_samples=max(1, int(round(hop_seconds * audio.sample_rate))),
                           max_windows=max_windows, features_backend=backend)
  n_features = (None if names is None else
                model.preprocess_features(np.zeros((1, len(names)), np.float32)).shape[1])
  device = _DeviceBatches(model, which=which, batch_size=batch_size, n_features=n_features)
  waiting: collections.deque[_Song | Prediction] = collections.deque()

  def ready() -> Iterator[Prediction]:
    while waiting and (isinstance(waiting[0], Prediction) or waiting[0].missing == 0):
      head = waiting.popleft()
      yield head if isinstance(head, Prediction) else _finish(head, per_window=per_window)

  for decoded in _decoded(list(paths), read, workers=workers):
    prediction = Prediction(path=decoded.path, which=which, segment=segment,
                            error=decoded.error)
    if decoded.error is not None:
      waiting.append(prediction)
      yield from ready()
      continue
    prediction.duration_seconds = decoded.duration_seconds
    prediction.window_starts = [round(s / audio.sample_rate, 3) for s in decoded.starts]
    prediction.padded = decoded.padded
    warnings = [w for w in [silence_warning(decoded)] if w]
    features = None
    assert decoded.windows is not None  # a song without an error has its windows
    if decoded.features is not None:
      assert names is not None  # features are computed only when the model takes them
      nan = np.isnan(decoded.features).any(axis=0)
      prediction.nan_features = [names[j] for j in np.flatnonzero(nan)]
      if prediction.nan_features:
        warnings.append(f"{len(prediction.nan_features)} feature(s) came out NaN and were "
                        f"replaced by the training median: "
                        f"{', '.join(prediction.nan_features[:5])}"
                        + (", ..." if len(prediction.nan_features) > 5 else ""))
      features = model.preprocess_features(decoded.features)
    prediction.warning = "; ".join(warnings) or None
    song = _Song(prediction, len(decoded.starts))
    waiting.append(song)
    device.add(song, decoded.windows, features)
    yield from ready()
  device.flush()
  yield from ready()


@dataclasses.dataclass
class LibrarySummary:
  """What :func:`predict_library` did: songs found, skipped (already in ``out``), predicted and
  failed."""

  found: int
  skipped: int
  predicted: int
  failed: int


def predict_library(inputs: Sequence[str | os.PathLike], *, model_dir: str | os.PathLike,
                    out: str | os.PathLike | None = None, which: str = "hybrid",
                    segment: str = "windows", hop_seconds: float | None = None,
                    max_windows: int = DEFAULT_MAX_WINDOWS, per_window: bool = False,
                    workers: int = 1, batch_size: int | None = None, progress: bool = False,
                    on_prediction: Callable[[Prediction], Any] | None = None,
                    cnn_impl: str | None = None, dtype: str | None = None
                    ) -> LibrarySummary:
  """Predicts every song of files, folders and list files; resumes an interrupted ``out``.

  Args:
    inputs: see :func:`collect_paths`.
    model_dir: a model directory from ``merjax train``.
    out: ``*.jsonl`` or ``*.csv`` written as songs finish (see the module doc for resuming).
    which, segment, hop_seconds, max_windows, per_window, workers, batch_size: see
      :func:`predict_songs`.
    progress: a progress bar (songs and songs/s) on stderr.
    on_prediction: called with each song's :class:`Prediction` as it is written.
    cnn_impl, dtype: execution settings replacing the model's recorded ones (see
      :func:`merjax.inference.directory.load_model`).

  Returns:
    The run's :class:`LibrarySummary`.
  """
  from tqdm.auto import tqdm

  from merjax.inference.directory import load_model

  check_options(which=which, segment=segment, hop_seconds=hop_seconds, max_windows=max_windows,
                workers=workers, batch_size=batch_size)
  model = load_model(model_dir, cnn_impl=cnn_impl, dtype=dtype)
  if which != "cnn":  # a model trained on a feature table cannot compute its features
    from merjax.features.source import features_record, require_audio_features
    require_audio_features(features_record(model.config))
  paths = collect_paths(inputs)
  results = (None if out is None
             else ResultsFile(out, which=which, segment=segment, per_window=per_window))
  todo = paths if results is None else [p for p in paths
                                        if os.path.abspath(p) not in results.done]
  summary = LibrarySummary(found=len(paths), skipped=len(paths) - len(todo), predicted=0,
                           failed=0)
  bar = tqdm(total=len(todo), unit="song", desc="predict", disable=not progress,
             file=sys.stderr, smoothing=0.1)
  try:
    with bar:
      for prediction in predict_songs(todo, model=model, which=which, segment=segment,
                                      hop_seconds=hop_seconds, max_windows=max_windows,
                                      per_window=per_window, workers=workers,
                                      batch_size=batch_size):
        if results is not None:
          results.write(prediction)
        if on_prediction is not None:
          on_prediction(prediction)
        summary.predicted += prediction.error is None
        summary.failed += prediction.error is not None
        bar.update()
  finally:
    if results is not None:
      results.close()
  return summary

