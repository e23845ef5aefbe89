"""What a dataset reader produces: songs with their audio, quadrant and split, plus its problems.

The readers (:mod:`merjax.data.merge`, :mod:`merjax.data.fourqaed`, :mod:`merjax.data.folder`)
share the CSV reading, quadrant parsing, audio matching and split-file logic kept here.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
import posixpath
import re
from collections.abc import Iterable, Sequence

import numpy as np

from merjax.audio.io import AUDIO_EXTENSIONS
from merjax.config import QUADRANTS
from merjax.data._tree import AudioRef, Tree
from merjax.data.splits import SPLITS, stratified_split
from merjax.errors import MerjaxError

ON_ERROR = ("stop", "skip")
# How many problems an error message lists before summarising the rest.
_LISTED = 20


@dataclasses.dataclass(frozen=True)
class Song:
  """One clip of a dataset.

  Attributes:
    song_id: the dataset's id (MERGE ``Song``/``Audio_Song``; for folders, the relative path).
    quadrant: 0..3 for Q1..Q4.
    split: ``"train"``, ``"validate"`` or ``"test"``.
    audio: where its audio file is.
    arousal, valence: annotations in [0, 1], NaN where the dataset has none.
  """

  song_id: str
  quadrant: int
  split: str
  audio: AudioRef
  arousal: float = math.nan
  valence: float = math.nan


@dataclasses.dataclass(frozen=True)
class Problem:
  """Why one song cannot be used."""

  song_id: str
  reason: str

  def __str__(self) -> str:
    return f"{self.song_id}: {self.reason}"


@dataclasses.dataclass
class SongTable:
  """A dataset as read from its released layout, before any audio is decoded.

  Attributes:
    name: the dataset's store name, e.g. ``merge:audio_balanced:70_15_15``.
    source: where it was read from.
    songs: the usable songs, in split-file order.
    problems: songs that cannot be used, with the reason.
    notes: remarks for the summary (e.g. where a drawn split was written).
  """

  name: str
  source: str
  songs: list[Song]
  problems: list[Problem] = dataclasses.field(default_factory=list)
  notes: list[str] = dataclasses.field(default_factory=list)

  def resolve(self, on_error: str) -> list[Song]:
    """The songs to use: all of them, or an error listing the problems (``on_error="stop"``)."""
    check_on_error(on_error)
    if self.problems and on_error == "stop":
      raise MerjaxError(problem_message(self.name, self.problems))
    bad = {p.song_id for p in self.problems}
    return [s for s in self.songs if s.song_id not in bad]


def check_on_error(on_error: str) -> None:
  if on_error not in ON_ERROR:
    raise MerjaxError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")


def problem_message(name: str, problems: Sequence[Problem]) -> str:
  """One message listing ``problems`` (the first few in full) and how to go on without them."""
  songs = len({p.song_id for p in problems})
  listed = "; ".join(str(p) for p in problems[:_LISTED])
  more = f"; ... and {len(problems) - _LISTED} more" if len(problems) > _LISTED else ""
  return (f"{name}: {len(problems)} problem(s) affecting {songs} song(s): {listed}{more}. "
          f"Fix them, or rerun with --on-error skip (on_error='skip') to leave these songs out")


def parse_quadrant(value) -> int | None:
  """``"Q1"``..``"Q4"`` (any case) or ``1``..``4`` to 0..3; anything else to None."""
  text = str(value).strip().upper()
  match = re.fullmatch(r"Q?([1-4])(?:\.0)?", text)
  return int(match.group(1)) - 1 if match else None


def parse_float(value) -> float:
  try:
    return float(str(value).strip())
  except ValueError:
    return math.nan


@dataclasses.dataclass(frozen=True)
class Table:
  """Rows of a CSV file, addressed by column name (case and surrounding spaces ignored)."""

  label: str
  header: tuple[str, ...]
  rows: tuple[tuple[str, ...], ...]

  def has(self, *names: str) -> bool:
    return self._find(names) is not None

  def _find(self, names: Iterable[str]) -> int | None:
    keys = [h.strip().lower() for h in self.header]
    for name in names:
      if name.lower() in keys:
        return keys.index(name.lower())
    return None

  def column(self, *names: str) -> list[str]:
    """Values of the first of ``names`` present (an error naming the file if none is)."""
    index = self._find(names)
    if index is None:
      raise MerjaxError(f"{self.label}: no column {' or '.join(repr(n) for n in names)} "
                        f"(columns: {', '.join(self.header)})")
    return [row[index].strip() if index < len(row) else "" for row in self.rows]


def parse_csv(text: str, *, label: str) -> Table:
  """Parses CSV text, guessing the delimiter (``,``, ``;`` or tab) from the header line."""
  first = text.split("\n", 1)[0]
  delimiter = max([",", ";", "\t"], key=first.count)
  rows = [r for r in csv.reader(io.StringIO(text), delimiter=delimiter)
          if any(c.strip() for c in r)]
  if not rows:
    raise MerjaxError(f"{label}: empty CSV file")
  return Table(label, tuple(rows[0]), tuple(tuple(r) for r in rows[1:]))


def read_csv(tree: Tree, rel: str) -> Table:
  if not tree.exists(rel):
    raise MerjaxError(f"{tree.label(rel)}: file not found")
  return parse_csv(tree.read_text(rel), label=tree.label(rel))


def _audio_rank(rel: str) -> int:
  ext = posixpath.splitext(rel)[1].lower()
  return AUDIO_EXTENSIONS.index(ext) if ext in AUDIO_EXTENSIONS else len(AUDIO_EXTENSIONS)


def audio_by_stem(tree: Tree, folder: str = "") -> dict[str, dict[int, str]]:
  """Audio files in ``folder/Q1..Q4``: song id (file stem) -> {quadrant: relative path}."""
  base = folder.strip("/") + "/" if folder.strip("/") else ""
  found: dict[str, dict[int, str]] = {}
  for rel in tree.files():
    if not rel.startswith(base) or _audio_rank(rel) == len(AUDIO_EXTENSIONS):
      continue
    parts = rel[len(base):].split("/")
    quadrant = (parse_quadrant(parts[0])
                if len(parts) == 2 and parts[0].upper().startswith("Q") else None)
    if quadrant is None:
      continue
    stem = posixpath.splitext(parts[1])[0]
    current = found.setdefault(stem, {}).get(quadrant)
    if current is None or _audio_rank(rel) < _audio_rank(current):  # prefer .mp3
      found[stem][quadrant] = rel
  return found


@dataclasses.dataclass(frozen=True)
class Entry:
  """One row of a split or annotation file, before its audio is looked up."""

  song_id: str
  quadrant: str
  split: str
  arousal: float = math.nan
  valence: float = math.nan


def duplicate_problems(entries: Sequence[Entry]) -> tuple[list[Entry], list[Problem]]:
  """Entries listed once, and a problem for every song listed more than once."""
  places: dict[str, list[str]] = {}
  for e in entries:
    places.setdefault(e.song_id, []).append(e.split)
  problems = []
  for song_id, splits in places.items():
    if len(splits) > 1:
      where = (f"listed in both {' and '.join(dict.fromkeys(splits))}" if len(set(splits)) > 1
               else f"listed {len(splits)} times in {splits[0]}")
      problems.append(Problem(song_id, where))
  bad = {p.song_id for p in problems}
  return [e for e in entries if e.song_id not in bad], problems


def match_audio(tree: Tree, entries: Sequence[Entry], audio: dict[str, dict[int, str]],
                folder: str = "") -> tuple[list[Song], list[Problem]]:
  """Finds every entry's audio in its quadrant's folder; mismatches become problems."""
  entries, problems = duplicate_problems(entries)
  songs = []
  for e in entries:
    quadrant = parse_quadrant(e.quadrant)
    if quadrant is None:
      problems.append(Problem(e.song_id, f"unknown quadrant label {e.quadrant!r} in the {e.split} "
                                         f"list (expected one of {', '.join(QUADRANTS)})"))
      continue
    where = audio.get(e.song_id, {})
    if quadrant in where:
      songs.append(Song(e.song_id, quadrant, e.split, tree.ref(where[quadrant]), e.arousal,
                        e.valence))
    elif where:
      found = ", ".join(tree.label(r) for r in where.values())
      problems.append(Problem(e.song_id, f"quadrant mismatch: the {e.split} list says "
                                         f"{QUADRANTS[quadrant]} but the audio is {found}"))
    else:
      expected = posixpath.join(folder, QUADRANTS[quadrant], e.song_id + ".mp3")
      problems.append(Problem(e.song_id, f"missing audio: listed in {e.split} but "
                                         f"{tree.label(expected)} does not exist"))
  return songs, problems


def split_file_name(seed: int) -> str:
  return f"merjax_split_70_15_15_seed{seed}.csv"


def drawn_splits(song_ids: Sequence[str], quadrants: Sequence[int], *, directory: str,
                 seed: int, fallback_dir: str | None = None) -> tuple[dict[str, str], str]:
  """The seeded stratified 70-15-15 split of the songs, saved as CSV and reused on reruns.

  Args:
    song_ids: the songs to split.
    quadrants: their quadrants (0..3), the strata.
    directory: where the split file goes (next to the data).
    seed: seed of :func:`merjax.data.splits.stratified_split`.
    fallback_dir: where to write the file when ``directory`` is read-only.

  Returns:
    ``(song_id -> split, note)`` where the note says where the split file is.

  Raises:
    MerjaxError: the saved split file does not cover every song, or cannot be written.
  """
  name = split_file_name(seed)
  for folder in [directory] + ([fallback_dir] if fallback_dir else []):
    path = os.path.join(folder, name)
    if os.path.isfile(path):
      with open(path, encoding="utf-8-sig") as f:
        table = parse_csv(f.read(), label=path)
      saved = dict(zip(table.column("Song"), table.column("Split")))
      missing = [s for s in song_ids if s not in saved]
      if missing:
        raise MerjaxError(f"{path}: the saved split does not list {len(missing)} song(s) "
                          f"(e.g. {missing[0]}); delete it to draw a new split")
      bad = sorted({v for v in saved.values()} - set(SPLITS))
      if bad:
        raise MerjaxError(f"{path}: unknown split name(s) {bad}; expected {', '.join(SPLITS)}")
      return {s: saved[s] for s in song_ids}, f"reused the saved split {path}"
  labels = stratified_split(np.asarray(quadrants, np.int64), seed=seed)
  assignment = dict(zip(song_ids, labels.tolist()))
  errors = []
  for folder in [directory] + ([fallback_dir] if fallback_dir else []):
    path = os.path.join(folder, name)
    try:
      os.makedirs(folder, exist_ok=True)
      tmp = path + ".tmp"
      with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["Song", "Quadrant", "Split"])
        for song_id, q in zip(song_ids, quadrants):
          writer.writerow([song_id, QUADRANTS[q], assignment[song_id]])
      os.replace(tmp, path)
      return assignment, f"drew a stratified 70-15-15 split (seed {seed}) and saved it to {path}"
    except OSError as error:
      errors.append(f"{path}: {error}")
  raise MerjaxError("cannot save the drawn split: " + "; ".join(errors))
