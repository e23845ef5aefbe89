"""Your own clips: any tree of Q1..Q4 folders, or a CSV listing path, quadrant and split.

Folder trees: every audio file whose nearest ``Q1``..``Q4`` ancestor folder gives its quadrant;
an ancestor folder named ``train``, ``validate`` (or ``validation``/``val``) or ``test`` gives its
split, e.g. ``train/Q2/song.mp3``. CSV files: columns ``path`` (relative to the CSV's folder),
``quadrant`` and optionally ``split``. Either way, without splits a seeded stratified 70-15-15
split is drawn and saved next to the data (``merjax_split_70_15_15_seed<seed>.csv``), and reused.
Song ids are the paths relative to the root without the extension.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Sequence

from merjax.audio.io import AUDIO_EXTENSIONS
from merjax.config import QUADRANTS
from merjax.data._index import (
  Entry,
  Problem,
  Song,
  SongTable,
  drawn_splits,
  duplicate_problems,
  parse_csv,
  parse_quadrant,
)
from merjax.data._tree import AudioRef, Tree
from merjax.data.splits import SPLITS
from merjax.errors import MerjaxError

_SPLIT_ALIASES = {"train": "train", "training": "train", "validate": "validate",
                  "validation": "validate", "val": "validate", "valid": "validate",
                  "test": "test", "testing": "test"}


def _split_name(value: str) -> str | None:
  return _SPLIT_ALIASES.get(value.strip().lower())


def _from_tree(tree: Tree) -> tuple[list[tuple[str, AudioRef, int, str | None]], list[str]]:
  """(song_id, audio, quadrant, split or None) for every audio file under a Qn folder, and
  the relative paths of the audio files that are under none (e.g. in ``Q5/`` or ``happy/``)."""
  found, outside = [], []
  for rel in tree.files():
    stem, ext = posixpath.splitext(rel)
    if ext.lower() not in AUDIO_EXTENSIONS:
      continue
    folders = rel.split("/")[:-1]
    quadrants = [q for f in folders
                 if f.upper().startswith("Q") and (q := parse_quadrant(f)) is not None]
    if not quadrants:
      outside.append(rel)
      continue
    splits = [s for s in map(_split_name, folders) if s is not None]
    found.append((stem, tree.ref(rel), quadrants[-1], splits[-1] if splits else None))
  return found, outside


def _outside_note(tree: Tree, outside: list[str]) -> str:
  """The summary's note on audio files that no Q1..Q4 folder labels."""
  folders = sorted({posixpath.dirname(r) + "/" if "/" in r else "./" for r in outside})
  shown = ", ".join(folders[:10]) + (f" and {len(folders) - 10} more" if len(folders) > 10 else "")
  return (f"ignored {len(outside)} audio file(s) in {tree.root_label} outside Q1..Q4 folders "
          f"(in {shown}), e.g. {tree.label(outside[0])}")


def same_recording_problems(songs: Sequence[Song], contents: dict[str, str | None], *,
                            notes: list[str] | None = None) -> list[Problem]:
  """The same recording (identical bytes) under two quadrants or in two splits.

  Kept, it would be learned under two labels, or tested on what was trained on; both songs
  become problems naming each other's file. Identical copies with the same quadrant and split
  are kept and named in ``notes``.

  Args:
    songs: the songs.
    contents: ``song_id -> content hash`` (see :class:`merjax.data.prepare.Decoded`).
    notes: where the remark on harmless copies is appended.

  Returns:
    One :class:`Problem` per song in a conflicting group.
  """
  groups: dict[str, list[Song]] = {}
  for song in songs:
    content = contents.get(song.song_id)
    if content:
      groups.setdefault(content, []).append(song)
  problems = []
  for group in groups.values():
    if len(group) < 2:
      continue
    quadrants = {s.quadrant for s in group}
    splits = {s.split for s in group}
    if len(quadrants) == 1 and len(splits) == 1:
      if notes is not None:
        notes.append("identical recordings kept (same quadrant and split): " +
                     ", ".join(s.audio.label for s in group))
      continue
    what = ("two quadrants" if len(quadrants) > 1 else "") + (
        " and " if len(quadrants) > 1 and len(splits) > 1 else "") + (
        "two splits" if len(splits) > 1 else "")
    for song in group:
      others = ", ".join(f"{o.audio.label} ({QUADRANTS[o.quadrant]}, {o.split})"
                         for o in group if o is not song)
      problems.append(Problem(song.song_id, f"same recording in {what}: {song.audio.label} "
                                            f"({QUADRANTS[song.quadrant]}, {song.split}) is "
                                            f"identical to {others}"))
  return problems


def _from_csv(path: str) -> tuple[Tree, list[tuple[str, AudioRef, int, str | None]],
                                  list[Problem]]:
  with open(path, encoding="utf-8-sig") as f:
    table = parse_csv(f.read(), label=path)
  folder = os.path.dirname(path)
  paths = table.column("path", "file", "filename")
  labels = table.column("quadrant", "label")
  splits = table.column("split") if table.has("split") else [""] * len(paths)
  found, problems = [], []
  for rel, label, split in zip(paths, labels, splits):
    if not rel:
      continue
    rel = rel.replace(os.sep, "/")
    song_id = posixpath.splitext(rel)[0]
    file = os.path.normpath(os.path.join(folder, rel))  # relative to the CSV, or absolute
    quadrant = parse_quadrant(label)
    split_name = _split_name(split) if split.strip() else None
    if quadrant is None:
      problems.append(Problem(song_id, f"unknown quadrant label {label!r} in {path} "
                                       f"(expected Q1..Q4)"))
    elif split.strip() and split_name is None:
      problems.append(Problem(song_id, f"unknown split {split!r} in {path} "
                                       f"(expected {', '.join(SPLITS)})"))
    elif not os.path.isfile(file):
      problems.append(Problem(song_id, f"missing audio: {file} does not exist"))
    else:
      found.append((song_id, AudioRef(file), quadrant, split_name))
  return Tree(folder), found, problems


def read_folder(path: str | os.PathLike, *, name: str = "folder", seed: int = 0,
                fallback_dir: str | None = None) -> SongTable:
  """Reads a folder tree (or zip) of Q1..Q4 folders, or a CSV of path, quadrant and split.

  Args:
    path: the folder, a zip archive of it, or the CSV file.
    name: the dataset's name (the store is ``folder:<name>``).
    seed: seed of the split drawn when the data has none.
    fallback_dir: where the split file goes when the data's folder is read-only.

  Returns:
    A :class:`SongTable` named ``folder:<name>`` (arousal and valence NaN).

  Raises:
    MerjaxError: no audio in Q1..Q4 folders, missing CSV columns, or some songs with a split
      and others without.
  """
  path = os.path.abspath(os.fspath(path))
  if not os.path.exists(path):
    raise MerjaxError(f"{path}: no such file or folder")
  notes: list[str] = []
  if path.lower().endswith(".csv"):
    tree, found, problems = _from_csv(path)
  else:
    tree = Tree(path)
    (found, outside), problems = _from_tree(tree), []
    if outside:
      notes.append(_outside_note(tree, outside))
  if not found and not problems:
    raise MerjaxError(f"{path}: no audio files ({', '.join(AUDIO_EXTENSIONS)}) in Q1..Q4 folders"
                      + (f"; {notes[0]}" if notes else ""))
  with_split = [f for f in found if f[3] is not None]
  if found and not with_split:
    assignment, note = drawn_splits([f[0] for f in found], [f[2] for f in found],
                                    directory=tree.writable_dir(), seed=seed,
                                    fallback_dir=fallback_dir)
    labelled = [(s, ref, q, assignment[s]) for s, ref, q, _ in found]
    notes.append(note)
  elif len(with_split) != len(found):
    example = next(f[1].label for f in found if f[3] is None)
    raise MerjaxError(f"{path}: {len(with_split)} of {len(found)} files have a split (e.g. from a "
                      f"train/validate/test folder or column) but others, like {example}, do not")
  else:  # every file has its split
    labelled = [(s, ref, q, split) for s, ref, q, split in found if split is not None]
  entries = [Entry(s, "", split) for s, _, _, split in labelled]
  unique, dup_problems = duplicate_problems(entries)
  keep = {e.song_id for e in unique}
  songs = [Song(s, q, split, ref) for s, ref, q, split in labelled if s in keep]
  return SongTable(name=f"folder:{name}", source=tree.root_label, songs=songs,
                   problems=problems + dup_problems, notes=notes)
