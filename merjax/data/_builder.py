"""The TFDS builders behind every prepared store (one code path for MERGE, 4QAED and folders).

Each store is a TFDS ``array_record`` dataset with splits ``train``, ``validate`` and ``test``;
one record per song:

  ``waveform``  int16 [shape=(clip_samples,)], mono, ``sample_rate`` Hz, ``x / 32768`` in [-1, 1)
  ``song_id``   text       ``quadrant`` class label Q1..Q4 (0..3)
  ``arousal``, ``valence``  float32 in [0, 1], NaN where unknown
  ``duration``  float32, true seconds before padding or cropping      ``split``  text

Records keep the order of the dataset's split lists (``disable_shuffling``), and the
``metadata.json`` TFDS writes next to the shards holds the same columns without the audio
(``merjax`` key), so a store's labels and ids load without reading any waveform.
TensorFlow is not needed to write or read it (``tfds.data_source``, ``as_data_source``).
Sample rate and clip length are builder arguments recorded in that metadata.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys

import numpy as np
import tensorflow_datasets as tfds

from merjax.audio.io import decoder_info
from merjax.config import QUADRANTS
from merjax.data._index import Problem, Song, SongTable, check_on_error, problem_message
from merjax.data.prepare import Decoded, PrepareSummary, cache_dir, decode_songs
from merjax.data.splits import SPLITS
from merjax.errors import MerjaxError

STORE_FORMAT = 1


def _json_float(value: float) -> float | None:
  return None if value is None or math.isnan(value) else float(value)


# tfds is untyped here, so mypy checks the class keyword against object's __init_subclass__.
class ClipsBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):  # type: ignore[call-arg]
  """Decodes a dataset's songs (in parallel, resumably) into array_record shards.

  Subclasses say how to read their release (:meth:`_read_songs`).

  Args:
    sample_rate: target rate in Hz.
    clip_seconds: clip length in seconds (crop or zero-pad at the end).
    seed: seed of drawn splits (4QAED, folders without splits).
    on_error: ``"stop"`` on any problem, or ``"skip"`` the affected songs.
    workers: decoding processes (default: all CPU cores).
    progress: show progress bars.
    **kwargs: ``data_dir``, ``config`` ... of ``tfds.core.GeneratorBasedBuilder``.
  """

  VERSION = tfds.core.Version("1.0.0")
  RELEASE_NOTES = {"1.0.0": "First release: 16 kHz int16 clips, quadrant, arousal, valence."}

  def __init__(self, *, sample_rate: int = 16000, clip_seconds: float = 30.0, seed: int = 0,
               on_error: str = "stop", workers: int | None = None, progress: bool = True,
               **kwargs):
    check_on_error(on_error)
    if sample_rate <= 0 or clip_seconds <= 0:
      raise MerjaxError(f"sample_rate and clip_seconds must be positive, got {sample_rate}, "
                        f"{clip_seconds}")
    self.sample_rate, self.clip_seconds, self.seed = int(sample_rate), float(clip_seconds), seed
    self.on_error, self.workers, self.progress = on_error, workers, progress
    self.decoded: dict[str, Decoded] = {}  # song id -> outcome, filled by _split_generators
    self.summary: PrepareSummary | None = None
    kwargs.setdefault("file_format", "array_record")
    super().__init__(**kwargs)
    self._original_state.update(sample_rate=sample_rate, clip_seconds=clip_seconds, seed=seed,
                                on_error=on_error, workers=workers, progress=progress)

  @tfds.core.utils.classproperty
  @classmethod
  def url_infos(cls):
    # Manual data only, so no download checksums (TFDS would look for them next to the code).
    return None

  # What a subclass provides.
  def _read_songs(self, manual_dir: str) -> SongTable:
    raise NotImplementedError

  def _dataset_name(self) -> str:
    raise NotImplementedError

  def _extra_params(self) -> dict:
    return {}

  def content_params(self) -> dict:
    """The settings that decide a store's content (a rebuild is needed when they change)."""
    return {"sample_rate": self.sample_rate, "clip_seconds": self.clip_seconds,
            **self._extra_params()}

  @property
  def clip_samples(self) -> int:
    return int(round(self.clip_seconds * self.sample_rate))

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        description=(f"{self._dataset_name()}: mono clips with their emotion quadrant "
                     f"(Russell's valence-arousal plane), prepared by merjax."),
        features=tfds.features.FeaturesDict({
            # BYTES keeps int16 as raw bytes (the default would widen it to int64 varints).
            "waveform": tfds.features.Tensor(shape=(None,), dtype=np.int16,
                                             encoding=tfds.features.Encoding.BYTES),
            "song_id": tfds.features.Text(),
            "quadrant": tfds.features.ClassLabel(names=list(QUADRANTS)),
            "arousal": tfds.features.Scalar(dtype=np.float32),
            "valence": tfds.features.Scalar(dtype=np.float32),
            "duration": tfds.features.Scalar(dtype=np.float32),
            "split": tfds.features.Text(),
        }),
        supervised_keys=("waveform", "quadrant"),
        disable_shuffling=True,
        metadata=tfds.core.MetadataDict(),
    )

  def build(self, *, manual_dir: str, overwrite: bool = False) -> PrepareSummary:
    """Reads ``manual_dir``, decodes and writes the store; returns the summary."""
    mode = (tfds.download.GenerateMode.REUSE_CACHE_IF_EXISTS if overwrite
            else tfds.download.GenerateMode.REUSE_DATASET_IF_EXISTS)
    if not self.progress:
      tfds.disable_progress_bar()
    # TFDS wants a folder as manual_dir; a zip or CSV file is read through its parent.
    self._manual_path = os.path.abspath(os.fspath(manual_dir))
    # TFDS prints its progress to stdout; keep stdout for results (summaries, --json), and
    # without progress, print none of it (an error then stays the only line on stderr).
    with contextlib.ExitStack() as stack:
      sink = sys.stderr if self.progress else stack.enter_context(open(os.devnull, "w"))
      stack.enter_context(contextlib.redirect_stdout(sink))
      self.download_and_prepare(
          download_dir=os.path.join(os.fspath(self.data_dir_root), "_downloads"),
          download_config=tfds.download.DownloadConfig(
              manual_dir=(self._manual_path if os.path.isdir(self._manual_path)
                          else os.path.dirname(self._manual_path)),
              download_mode=mode, compute_stats=tfds.download.ComputeStatsMode.SKIP))
    if self.summary is None:  # TFDS found the store already written and reused it
      from merjax.data.store import PreparedDataset
      return PreparedDataset(os.fspath(self.data_dir)).summary()
    self.summary.store_dir = os.fspath(self.data_dir)  # the final folder, not the temporary one
    return self.summary

  def _split_generators(self, dl_manager):
    manual = getattr(self, "_manual_path", None) or os.fspath(dl_manager.manual_dir)
    table = self._read_songs(manual)
    # Validation and decoding in one pass: a strict run names every problem (missing,
    # duplicated, unreadable, truncated ...) at once, not one kind per rerun.
    songs = table.resolve("skip")
    self.decoded = decode_songs(
        songs, directory=cache_dir(os.fspath(self.data_dir_root), sample_rate=self.sample_rate,
                                   clip_seconds=self.clip_seconds),
        sample_rate=self.sample_rate, clip_seconds=self.clip_seconds, workers=self.workers,
        progress=self.progress)
    failed = [Problem(s.song_id, self.decoded[s.song_id].error) for s in songs
              if self.decoded[s.song_id].status == "failed"]
    skipped = table.problems + failed + self._content_problems(
        [s for s in songs if self.decoded[s.song_id].status != "failed"], table)
    if skipped and self.on_error == "stop":
      raise MerjaxError(problem_message(table.name, skipped) +
                        "; the clips decoded so far are cached and a rerun reuses them")
    bad = {p.song_id for p in skipped}
    kept = [s for s in songs if s.song_id not in bad]
    if not kept:
      raise MerjaxError(f"{table.name}: no usable songs in {table.source}")
    by_split = {split: [s for s in kept if s.split == split] for split in SPLITS}
    self.info.metadata["merjax"] = self._index(table, by_split, skipped)
    statuses = [self.decoded[s.song_id].status for s in kept]
    codec = decoder_info()
    self.summary = PrepareSummary(
        dataset=table.name, store_dir=os.fspath(self.data_dir),
        counts={split: [sum(s.quadrant == q for s in part) for q in range(len(QUADRANTS))]
                for split, part in by_split.items()},
        skipped=skipped, decoded=statuses.count("decoded"), reused=statuses.count("cached"),
        notes=list(table.notes),
        decoder=f"{codec['decoder']}, resampled with {codec['resampler']}")
    return {split: self._generate_examples(songs=part) for split, part in by_split.items() if part}

  def _content_problems(self, songs: list[Song], table: SongTable) -> list[Problem]:
    """Problems that only the decoded contents reveal (none by default; see AudioFolder)."""
    del songs, table
    return []

  def _index(self, table: SongTable, by_split: dict[str, list[Song]],
             skipped: list[Problem]) -> dict:
    def columns(part: list[Song]) -> dict:
      return {"song_id": [s.song_id for s in part], "quadrant": [s.quadrant for s in part],
              "arousal": [_json_float(s.arousal) for s in part],
              "valence": [_json_float(s.valence) for s in part],
              "duration": [self.decoded[s.song_id].duration for s in part],
              "source_rate": [self.decoded[s.song_id].source_rate for s in part]}

    return {"format": STORE_FORMAT, "dataset": table.name, "source": table.source,
            "params": self.content_params(), "sample_rate": self.sample_rate,
            "clip_samples": self.clip_samples,
            "splits": {split: columns(part) for split, part in by_split.items()},
            "skipped": [{"song_id": p.song_id, "reason": p.reason} for p in skipped],
            "decoder": decoder_info(),
            "notes": list(table.notes)}

  def _generate_examples(self, songs: list[Song]):
    for position, song in enumerate(songs):
      outcome = self.decoded[song.song_id]
      if outcome.cache_file is None:  # only failed songs have none, and they are not written
        raise MerjaxError(f"{song.song_id}: no decoded clip to write (status {outcome.status})")
      with np.load(outcome.cache_file) as cached:
        waveform = cached["waveform"]
      # Integer keys keep the split-list order (disable_shuffling sorts by key).
      yield position, {"waveform": waveform, "song_id": song.song_id, "quadrant": song.quadrant,
                       "arousal": np.float32(song.arousal), "valence": np.float32(song.valence),
                       "duration": np.float32(outcome.duration), "split": song.split}


class FourQaed(ClipsBuilder):
  """4QAED (Panda et al. 2018) with a seeded, saved stratified 70-15-15 split."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download the 4QAED dataset (900 30-second MP3 clips in Q1..Q4 folders with
  panda_dataset_taffc_annotations.csv; see github.com/renatopanda/TAFFC2018) and pass its
  folder or zip archive as the manual directory (`merjax prepare 4qaed --manual-dir PATH`).
  """

  def _dataset_name(self) -> str:
    return "4QAED"

  def _extra_params(self) -> dict:
    return {"seed": self.seed}

  def _read_songs(self, manual_dir: str) -> SongTable:
    from merjax.data.fourqaed import read_fourqaed
    return read_fourqaed(manual_dir, seed=self.seed,
                         fallback_dir=os.path.join(os.fspath(self.data_dir_root), "_splits",
                                                   "4qaed"))


class AudioFolder(ClipsBuilder):
  """Your own clips; the config name is the dataset's name (``folder:<name>``)."""

  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Pass a folder (or zip) with Q1..Q4 sub-folders of audio files, optionally below
  train/validate/test folders, or a CSV with columns path, quadrant and optionally split
  (`merjax prepare folder --path PATH --name NAME`).
  """

  def _dataset_name(self) -> str:
    return f"folder:{self.builder_config.name}"

  def _extra_params(self) -> dict:
    return {"seed": self.seed}

  def _content_problems(self, songs: list[Song], table: SongTable) -> list[Problem]:
    from merjax.data.folder import same_recording_problems
    return same_recording_problems(songs, {s.song_id: self.decoded[s.song_id].content
                                           for s in songs}, notes=table.notes)

  def _read_songs(self, manual_dir: str) -> SongTable:
    from merjax.data.folder import read_folder
    return read_folder(manual_dir, name=self.builder_config.name, seed=self.seed,
                       fallback_dir=os.path.join(os.fspath(self.data_dir_root), "_splits",
                                                 "folder", self.builder_config.name))
