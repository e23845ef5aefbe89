"""``merjax prepare``: decode a dataset in parallel, resumably, into its array_record store.

Decoding is the expensive part, so it runs in worker processes and every finished clip is saved
at once in a decode cache (``<data_dir>/_decoded/sr<rate>_n<samples>/<sha1 of the file>.npz``:
int16 waveform, true duration, source rate). The cache is keyed by the file's content, so a
rerun after an interruption or an error, or for the other split variant of the same files,
decodes only what is not there yet. Once the store is written the cache entries it used are
removed unless ``keep_cache`` is set.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
import multiprocessing
import os
import sys
from collections.abc import Sequence

import numpy as np

from merjax.audio.io import decoder_info, load_audio, to_pcm16
from merjax.config import QUADRANTS
from merjax.data._index import Problem, Song, check_on_error
from merjax.data._tree import AudioRef, bytes_io, content_hash
from merjax.data.splits import SPLITS
from merjax.errors import MerjaxError


@dataclasses.dataclass(frozen=True)
class Decoded:
  """Outcome of decoding one song.

  Attributes:
    song_id: the song.
    status: ``"decoded"`` (done now), ``"cached"`` (reused from the cache) or ``"failed"``.
    cache_file: the ``.npz`` holding ``waveform`` (int16), ``duration`` and ``source_rate``.
    duration: true duration in seconds before padding or cropping.
    source_rate: the file's sampling rate.
    error: why decoding failed.
    content: SHA-1 of the file's bytes (None when they could not be read); the same
      recording under two names shares it.
  """

  song_id: str
  status: str
  cache_file: str | None = None
  duration: float = math.nan
  source_rate: int = 0
  error: str | None = None
  content: str | None = None


def cache_dir(data_dir: str, *, sample_rate: int, clip_seconds: float) -> str:
  """The decode cache for one sample rate and clip length under ``data_dir``."""
  samples = int(round(clip_seconds * sample_rate))
  return os.path.join(data_dir, "_decoded", f"sr{sample_rate}_n{samples}")


def default_workers() -> int:
  return os.cpu_count() or 1


def _decode_job(job: tuple[str, AudioRef, str, int, float]) -> Decoded:
  """Runs in a worker: reuse the cached clip of this content, or decode and cache it."""
  song_id, ref, directory, sample_rate, clip_seconds = job
  content = None
  decoder = decoder_info()["decoder"]
  try:
    data = ref.read_bytes()
    content = content_hash(data)
    path = os.path.join(directory, content + ".npz")
    if os.path.exists(path):
      try:
        with np.load(path) as cached:
          # An entry another libsndfile decoded is decoded again (same samples everywhere).
          if str(cached["decoder"]) == decoder:
            return Decoded(song_id, "cached", path, float(cached["duration"]),
                           int(cached["source_rate"]), content=content)
      except (OSError, ValueError, KeyError, EOFError):
        pass  # a damaged entry (e.g. disk full earlier): decode again
    clip = load_audio(bytes_io(ref, data), sample_rate=sample_rate, clip_seconds=clip_seconds,
                      name=ref.label)
    tmp = f"{path}.{os.getpid()}.tmp.npz"
    np.savez(tmp, waveform=to_pcm16(clip.waveform), duration=clip.duration_seconds,
             source_rate=clip.source_rate, decoder=decoder)
    os.replace(tmp, path)  # atomic: an interrupted write never leaves a half entry
    return Decoded(song_id, "decoded", path, clip.duration_seconds, clip.source_rate,
                   content=content)
  except MerjaxError as error:
    return Decoded(song_id, "failed", error=str(error), content=content)
  except Exception as error:  # pylint: disable=broad-except  # one odd file must not end the run
    return Decoded(song_id, "failed", error=f"{ref.label}: {type(error).__name__}: {error}",
                   content=content)


def decode_songs(songs: Sequence[Song], *, directory: str, sample_rate: int = 16000,
                 clip_seconds: float = 30.0, workers: int | None = None,
                 progress: bool = True) -> dict[str, Decoded]:
  """Decodes every song into the cache in parallel worker processes, with a progress bar.

  Args:
    songs: what to decode.
    directory: the decode cache (see :func:`cache_dir`).
    sample_rate: target rate in Hz.
    clip_seconds: clip length (crop or zero-pad).
    workers: worker processes (default: all CPU cores; 1 decodes in this process).
    progress: show a tqdm bar on stderr.

  Returns:
    ``song_id -> Decoded`` for every song.
  """
  from tqdm.auto import tqdm

  os.makedirs(directory, exist_ok=True)
  workers = default_workers() if workers is None else max(1, int(workers))
  jobs = [(s.song_id, s.audio, directory, sample_rate, clip_seconds) for s in songs]
  results: dict[str, Decoded] = {}
  with tqdm(total=len(jobs), desc="decoding", unit="clip", disable=not progress,
            file=sys.stderr) as bar:
    def record(outcome: Decoded) -> None:
      results[outcome.song_id] = outcome
      bar.update(1)
      bar.set_postfix(failed=sum(r.status == "failed" for r in results.values()), refresh=False)

    if workers == 1 or len(jobs) <= 1:
      for job in jobs:
        record(_decode_job(job))
      return results
    # spawn, not fork: the parent may hold JAX/TFDS threads that a fork would copy mid-lock.
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
      futures = [pool.submit(_decode_job, job) for job in jobs]
      try:
        for future in concurrent.futures.as_completed(futures):
          record(future.result())
      except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
  return results


@dataclasses.dataclass
class PrepareSummary:
  """What ``merjax prepare`` did.

  Attributes:
    dataset: the store's name, e.g. ``merge:audio_balanced:70_15_15``.
    store_dir: the TFDS dataset directory.
    counts: ``split -> [songs in Q1, Q2, Q3, Q4]``.
    skipped: every song left out, with the reason.
    decoded: clips decoded in this run.
    reused: clips taken from the decode cache.
    notes: other remarks (drawn splits, missing optional files, ignored folders, cache removal).
    already_prepared: the store existed and was reused as is.
    decoder: the audio decoder and resampler with their versions (:func:`decoder_info`).
  """

  dataset: str
  store_dir: str
  counts: dict[str, list[int]]
  skipped: list[Problem]
  decoded: int = 0
  reused: int = 0
  notes: list[str] = dataclasses.field(default_factory=list)
  already_prepared: bool = False
  decoder: str | None = None

  @property
  def total(self) -> int:
    return sum(sum(c) for c in self.counts.values())

  def format(self) -> str:
    """A readable report: counts per split and quadrant, then every skipped song."""
    head = ("already prepared, reused" if self.already_prepared else
            f"prepared ({self.decoded} clips decoded, {self.reused} reused from the cache)")
    lines = [f"{self.dataset}: {head}", f"store: {self.store_dir}"]
    if self.decoder:
      lines.append(f"decoded with {self.decoder}")
    lines += ["",
             f"{'split':<10}" + "".join(f"{q:>7}" for q in QUADRANTS) + f"{'total':>8}"]
    for split in SPLITS:
      row = self.counts.get(split, [0] * len(QUADRANTS))
      lines.append(f"{split:<10}" + "".join(f"{c:>7}" for c in row) + f"{sum(row):>8}")
    totals = [sum(self.counts.get(s, [0] * 4)[q] for s in SPLITS) for q in range(len(QUADRANTS))]
    lines.append(f"{'total':<10}" + "".join(f"{c:>7}" for c in totals) + f"{sum(totals):>8}")
    if self.skipped:
      lines += ["", f"skipped {len({p.song_id for p in self.skipped})} song(s):"]
      lines += [f"  {p}" for p in self.skipped]
    lines += [f"note: {n}" for n in self.notes]
    return "\n".join(lines)


def prepare(dataset: str, *, manual_dir: str | os.PathLike,
            data_dir: str | os.PathLike | None = None, on_error: str = "stop",
            workers: int | None = None, sample_rate: int = 16000, clip_seconds: float = 30.0,
            seed: int = 0, overwrite: bool = False, keep_cache: bool = False,
            progress: bool = True) -> PrepareSummary:
  """Reads a dataset's release, decodes it and writes its array_record store.

  Args:
    dataset: ``merge:<subset>[:<split>]``, ``4qaed`` or ``folder:<name>``.
    manual_dir: the downloaded data (MERGE/4QAED folder or zip, or your folder or CSV).
    data_dir: where stores live (default :func:`merjax.data.store.default_data_dir`).
    on_error: ``"stop"`` on any problem (listing all of them), or ``"skip"`` the affected songs.
    workers: decoding processes (default: all CPU cores).
    sample_rate: target rate in Hz.
    clip_seconds: clip length in seconds.
    seed: seed of the drawn split (4QAED and folders without splits).
    overwrite: rebuild an existing store (decoded clips in the cache are still reused).
    keep_cache: keep the decode cache after the store is written.
    progress: show progress bars.

  Returns:
    A :class:`PrepareSummary`.

  Raises:
    MerjaxError: unknown dataset, unreadable release, or problems with ``on_error="stop"``.
  """
  from merjax.data import store

  check_on_error(on_error)
  spec = store.parse_dataset(dataset)
  manual_dir = os.path.abspath(os.fspath(manual_dir))
  if not os.path.exists(manual_dir):
    raise MerjaxError(f"{manual_dir}: no such file or folder")
  data_dir = os.path.abspath(os.fspath(data_dir or store.default_data_dir()))
  builder = store.make_builder(spec, data_dir=data_dir, sample_rate=sample_rate,
                               clip_seconds=clip_seconds, seed=seed, on_error=on_error,
                               workers=workers, progress=progress)
  if os.path.isfile(os.path.join(spec.store_path(data_dir), "metadata.json")) and not overwrite:
    prepared = store.open_prepared(spec.name, data_dir)
    wanted = builder.content_params()
    if prepared.params != wanted:
      changed = ", ".join(f"{k}={prepared.params.get(k)!r} (asked {v!r})"
                          for k, v in wanted.items() if prepared.params.get(k) != v)
      raise MerjaxError(f"{spec.name} is already prepared in {data_dir} with {changed}; "
                        f"pass --overwrite (overwrite=True) to rebuild it")
    return prepared.summary()
  summary = builder.build(manual_dir=manual_dir, overwrite=overwrite)
  if not keep_cache:
    used = {d.cache_file for d in builder.decoded.values() if d.cache_file}
    for path in used:
      try:
        os.remove(path)
      except OSError:
        pass
    summary.notes.append(f"removed {len(used)} decoded clip(s) from the cache "
                         f"(--keep-cache keeps them for the other split variant)")
  return summary
