"""Prepared datasets: what ``merjax prepare`` writes and training, evaluation and benchmarks read.

A dataset is named ``merge:<subset>[:<split>]`` (split ``70_15_15`` by default, or
``40_30_30``), ``4qaed`` or ``folder:<name>``. Its store is a TFDS array_record dataset (layout in
:mod:`merjax.data._builder`) under the data directory (``$MERJAX_DATA_DIR`` or
``~/merjax_data``)::

  <data_dir>/merge/audio_balanced_70_15_15/1.0.0/    merge-{train,validate,test}.array_record-*
  <data_dir>/four_qaed/1.0.0/
  <data_dir>/audio_folder/<name>/1.0.0/

:func:`open_prepared` returns a :class:`PreparedDataset`: all splits as one indexable set (train,
then validate, then test) with its labels and ids in memory and the waveforms read on demand.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from merjax.audio.io import from_pcm16
from merjax.data._index import Problem
from merjax.data.splits import SPLITS
from merjax.errors import MerjaxError

VERSION = "1.0.0"
DATASETS_HELP = "merge:<subset>[:70_15_15|40_30_30], 4qaed or folder:<name>"
_FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
# grain reads from several threads; the first read opens the shards and imports TFDS, whose lazy
# imports deadlock when two threads race through them (functools.cached_property in 3.11).
_OPEN_LOCK = threading.Lock()


def default_data_dir() -> str:
  """``$MERJAX_DATA_DIR`` if set, else ``~/merjax_data``."""
  return os.path.abspath(os.path.expanduser(os.environ.get("MERJAX_DATA_DIR") or "~/merjax_data"))


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """A parsed dataset name.

  Attributes:
    name: canonical name, e.g. ``merge:audio_balanced:70_15_15``, ``4qaed``, ``folder:mine``.
    kind: ``merge``, ``4qaed`` or ``folder``.
    subset, split: MERGE subset and split variant.
    folder: the folder dataset's name.
  """

  name: str
  kind: str
  subset: str | None = None
  split: str | None = None
  folder: str | None = None

  @property
  def builder_name(self) -> str:
    return {"merge": "merge", "4qaed": "four_qaed", "folder": "audio_folder"}[self.kind]

  @property
  def config_name(self) -> str | None:
    if self.kind == "merge":
      return f"{self.subset}_{self.split}"
    return self.folder if self.kind == "folder" else None

  def store_path(self, data_dir: str | os.PathLike) -> str:
    parts = [os.fspath(data_dir), self.builder_name]
    if self.config_name:
      parts.append(self.config_name)
    return os.path.join(*parts, VERSION)

  def prepare_command(self, data_dir: str | os.PathLike | None = None) -> str:
    """The ``merjax prepare`` command line that writes this store."""
    where = f" --data-dir {os.fspath(data_dir)}" if data_dir else ""
    if self.kind == "merge":
      split = "" if self.split == "70_15_15" else f" --split {self.split}"
      return f"merjax prepare merge --subset {self.subset}{split} --manual-dir PATH{where}"
    if self.kind == "4qaed":
      return f"merjax prepare 4qaed --manual-dir PATH{where}"
    return f"merjax prepare folder --path PATH --name {self.folder}{where}"


def parse_dataset(dataset: str) -> DatasetSpec:
  """Parses ``merge:<subset>[:<split>]``, ``4qaed`` or ``folder:<name>``.

  Raises:
    MerjaxError: an unknown dataset, MERGE subset or split, or an invalid folder name.
  """
  from merjax.data.merge import check_split, check_subset

  parts = [p.strip() for p in str(dataset).strip().split(":")]
  kind = parts[0].lower()
  if kind == "merge" and len(parts) in (2, 3):
    subset = check_subset(parts[1])
    split = check_split(parts[2]) if len(parts) == 3 else "70_15_15"
    return DatasetSpec(f"merge:{subset}:{split}", "merge", subset=subset, split=split)
  if kind == "4qaed" and len(parts) == 1:
    return DatasetSpec("4qaed", "4qaed")
  if kind == "folder" and len(parts) == 2:
    if not _FOLDER_NAME.fullmatch(parts[1]):
      raise MerjaxError(f"invalid folder dataset name {parts[1]!r}: use letters, digits, '_', "
                        f"'-' and '.', starting with a letter or digit")
    return DatasetSpec(f"folder:{parts[1]}", "folder", folder=parts[1])
  raise MerjaxError(f"unknown dataset {dataset!r}; expected {DATASETS_HELP}")


def make_builder(spec: DatasetSpec, *, data_dir: str | os.PathLike, **kwargs):
  """The TFDS builder that prepares ``spec`` (kwargs go to :class:`ClipsBuilder`)."""
  import tensorflow_datasets as tfds

  from merjax.data import _builder

  data_dir = os.fspath(data_dir)
  if spec.kind == "merge":
    from merjax.data.tfds_merge import Merge
    return Merge(config=spec.config_name, data_dir=data_dir, **kwargs)
  if spec.kind == "4qaed":
    return _builder.FourQaed(data_dir=data_dir, **kwargs)
  return _builder.AudioFolder(config=tfds.core.BuilderConfig(name=spec.folder),
                              data_dir=data_dir, **kwargs)


def _nan(values: Sequence) -> np.ndarray:
  return np.array([np.nan if v is None else v for v in values], dtype=np.float32)


class PreparedDataset:
  """A prepared store: every split in one indexable set, waveforms read on demand.

  It is a grain-compatible random-access source: ``len(ds)`` and ``ds[i]`` (a dict with
  ``waveform`` int16 [shape=(clip_samples,)], ``label`` int32 and ``index`` int64), plus
  ``ds.__getitems__(indices)`` and ``ds.gather(indices)`` for batched reads. It pickles as its
  path, so grain worker processes reopen it.

  Attributes:
    name: canonical dataset name.
    path: the TFDS dataset directory.
    sample_rate, clip_samples: audio format of every waveform.
    song_ids: [shape=(n,)] str.  labels: [shape=(n,)] int32, 0..3 for Q1..Q4.
    splits: [shape=(n,)] ``"train"``, ``"validate"`` or ``"test"`` (in that order).
    arousal, valence: [shape=(n,)] float32, NaN where unknown.
    durations: [shape=(n,)] float32 true durations in seconds.
    params: the settings it was prepared with; skipped: songs left out, with reasons.
    decoder: the audio decoder and resampler it was decoded with, with their versions
      (:func:`merjax.audio.io.decoder_info`; empty for stores written before it was recorded).
  """

  def __init__(self, path: str | os.PathLike):
    self.path = os.fspath(path)
    with open(os.path.join(self.path, "metadata.json"), encoding="utf-8") as f:
      meta = json.load(f)["merjax"]
    self._meta = meta
    self.name: str = meta["dataset"]
    self.params: dict = meta["params"]
    self.sample_rate: int = int(meta["sample_rate"])
    self.clip_samples: int = int(meta["clip_samples"])
    present = [s for s in SPLITS if meta["splits"].get(s, {}).get("song_id")]
    columns = {key: [v for s in present for v in meta["splits"][s][key]]
               for key in ("song_id", "quadrant", "arousal", "valence", "duration")}
    self.song_ids = np.array(columns["song_id"], dtype=str)
    self.labels = np.array(columns["quadrant"], dtype=np.int32)
    self.splits = np.array([s for s in present for _ in meta["splits"][s]["song_id"]], dtype="<U8")
    self.arousal, self.valence = _nan(columns["arousal"]), _nan(columns["valence"])
    self.durations = _nan(columns["duration"])
    self.skipped = [Problem(p["song_id"], p["reason"]) for p in meta.get("skipped", [])]
    self.decoder: dict = dict(meta.get("decoder") or {})
    sizes = [len(meta["splits"][s]["song_id"]) for s in present]
    self._split_of = np.repeat(np.arange(len(present)), sizes)
    self._local = np.concatenate([np.arange(n) for n in sizes]) if sizes else np.zeros(0, int)
    self._present = present
    self._sources: dict[str, Any] | None = None  # split -> tfds data source, opened lazily

  def __getstate__(self):
    return {"path": self.path}

  def __setstate__(self, state):
    self.__init__(state["path"])

  def __repr__(self) -> str:
    counts = ", ".join(f"{s}={int(np.sum(self.splits == s))}" for s in self._present)
    return f"PreparedDataset({self.name!r}, {counts}, {self.path})"

  def __len__(self) -> int:
    return len(self.song_ids)

  def indices(self, split: str) -> np.ndarray:
    """Dataset indices of one split, in split-list order [shape=(n_split,)] int64."""
    if split not in SPLITS:
      raise MerjaxError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
    return np.flatnonzero(self.splits == split)

  def _source(self, split: str):
    sources = self._sources
    if sources is None:
      with _OPEN_LOCK:
        if self._sources is None:
          self._sources = self._open()
        sources = self._sources
    return sources[split]

  def _open(self) -> dict[str, Any]:
    import tensorflow_datasets as tfds
    builder = tfds.builder_from_directory(self.path)
    sources = {s: builder.as_data_source(split=s) for s in self._present}
    for s, source in sources.items():  # the index and the shards must agree
      first = source[0]["song_id"]
      expected = self._meta["splits"][s]["song_id"][0]
      if len(source) != len(self._meta["splits"][s]["song_id"]) or (
          first.decode() if isinstance(first, bytes) else first) != expected:
        raise MerjaxError(f"{self.path}: the {s} shards do not match metadata.json; prepare "
                          f"the dataset again with --overwrite")
    return sources

  def _record(self, index: int, raw: dict) -> dict:
    return {"waveform": raw["waveform"], "label": self.labels[index], "index": np.int64(index)}

  def __getitem__(self, index) -> dict:
    index = int(index)
    if not -len(self) <= index < len(self):
      raise IndexError(f"index {index} out of range for {len(self)} examples")
    index %= len(self)
    split = self._present[self._split_of[index]]
    return self._record(index, self._source(split)[int(self._local[index])])

  def __getitems__(self, indices: ArrayLike) -> list[dict]:
    """Records of many indices, read in parallel per split (grain's batched-read hook)."""
    rows = np.asarray(indices, dtype=np.int64) % max(len(self), 1)
    out: dict[int, dict] = {}
    for k, split in enumerate(self._present):
      where = np.flatnonzero(self._split_of[rows] == k)
      if where.size:
        raws = self._source(split).__getitems__([int(i) for i in self._local[rows[where]]])
        for w, raw in zip(where, raws):
          out[int(w)] = self._record(int(rows[w]), raw)
    return [out[w] for w in range(len(rows))]  # every row's split is one of self._present

  def gather(self, indices: ArrayLike) -> dict[str, np.ndarray]:
    """A batch as stacked arrays.

    Returns:
      ``waveform`` int16 [shape=(n, clip_samples)], ``label`` and ``index`` [shape=(n,)].
    """
    records = self.__getitems__(indices)
    return {key: np.stack([r[key] for r in records]) for key in ("waveform", "label", "index")}

  def waveform(self, index: int) -> np.ndarray:
    """One clip as float32 in [-1, 1) [shape=(clip_samples,)]."""
    return from_pcm16(self[index]["waveform"])

  def waveforms(self, indices: ArrayLike | None = None) -> np.ndarray:
    """Many clips as float32 [shape=(len(indices), clip_samples)] (all of them by default)."""
    rows = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
    out = np.empty((len(rows), self.clip_samples), np.float32)
    for start in range(0, len(rows), 256):  # bounded int16 staging memory
      chunk = self.gather(rows[start:start + 256])["waveform"]
      out[start:start + len(chunk)] = from_pcm16(chunk)
    return out

  def summary(self):
    """The :class:`merjax.data.prepare.PrepareSummary` of this store (counts and skipped)."""
    from merjax.data.prepare import PrepareSummary
    counts = {s: [int(np.sum((self.splits == s) & (self.labels == q))) for q in range(4)]
              for s in SPLITS}
    codec = self.decoder
    return PrepareSummary(dataset=self.name, store_dir=self.path, counts=counts,
                          skipped=list(self.skipped), notes=list(self._meta.get("notes", [])),
                          already_prepared=True,
                          decoder=(f"{codec['decoder']}, resampled with {codec['resampler']}"
                                   if codec else None))


def open_prepared(dataset: str, data_dir: str | os.PathLike | None = None) -> PreparedDataset:
  """Opens a prepared dataset.

  Args:
    dataset: ``merge:<subset>[:<split>]``, ``4qaed`` or ``folder:<name>``.
    data_dir: where stores live (default :func:`default_data_dir`).

  Returns:
    The :class:`PreparedDataset`.

  Raises:
    MerjaxError: unknown dataset name, or no prepared store (the message gives the
      ``merjax prepare`` command that writes it).
  """
  spec = parse_dataset(dataset)
  data_dir = os.path.abspath(os.fspath(data_dir or default_data_dir()))
  path = spec.store_path(data_dir)
  if not os.path.isfile(os.path.join(path, "metadata.json")):
    parent = os.path.dirname(path)
    interrupted = os.path.isdir(parent) and any(
        e.startswith("incomplete.") for e in os.listdir(parent))
    state = ("its preparation did not finish" if interrupted else "it is not prepared")
    raise MerjaxError(f"dataset {spec.name!r} has no store in {data_dir} ({state}); run "
                      f"`{spec.prepare_command(data_dir)}` first")
  return PreparedDataset(path)
