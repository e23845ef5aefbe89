"""The 4QAED dataset (Panda et al. 2018): 900 clips, 225 per quadrant, as released::

  <root>/
    Q1/ .. Q4/<Song>.mp3
    panda_dataset_taffc_annotations.csv    Song, Quadrant
    panda_dataset_taffc_metadata.csv       (not needed here)

4QAED ships no train/validate/test split. A stratified 70-15-15 split is drawn with a seed and
saved next to the data as ``merjax_split_70_15_15_seed<seed>.csv`` (Song, Quadrant, Split); a
rerun reuses that file, so the split stays the same.

References:
  Panda, Malheiro, Paiva, "Novel Audio Features for Music Emotion Recognition", IEEE
  Transactions on Affective Computing 11(4), 2020 (dataset: github.com/renatopanda/TAFFC2018).
"""

from __future__ import annotations

import os

from merjax.data._index import (
  Entry,
  SongTable,
  audio_by_stem,
  drawn_splits,
  duplicate_problems,
  match_audio,
  parse_quadrant,
  read_csv,
)
from merjax.data._tree import locate

ANNOTATIONS = "panda_dataset_taffc_annotations.csv"


def read_fourqaed(path: str | os.PathLike, *, seed: int = 0,
                  fallback_dir: str | None = None) -> SongTable:
  """Reads 4QAED and its (drawn, saved, reused) stratified 70-15-15 split.

  Args:
    path: the dataset folder, its zip archive, or a folder containing either.
    seed: seed of the split drawn when no saved split file exists yet.
    fallback_dir: where the split file goes when the data's folder is read-only.

  Returns:
    A :class:`SongTable` named ``4qaed`` (arousal and valence are NaN: 4QAED has quadrants only).

  Raises:
    MerjaxError: no annotations file, a missing column, or an unusable saved split file.
  """
  tree = locate(path, marker=ANNOTATIONS)
  table = read_csv(tree, ANNOTATIONS)
  rows = [(s, q) for s, q in zip(table.column("Song"), table.column("Quadrant")) if s]
  # The split covers every annotated song with a valid label, whatever its audio's state, so
  # fixing a broken file later does not change it.
  unique, _ = duplicate_problems([Entry(s, q, "annotations") for s, q in rows])
  valid = [(e.song_id, q) for e in unique if (q := parse_quadrant(e.quadrant)) is not None]
  assignment, note = drawn_splits([s for s, _ in valid], [q for _, q in valid],
                                  directory=tree.writable_dir(), seed=seed,
                                  fallback_dir=fallback_dir)
  entries = [Entry(s, q, assignment.get(s, "annotations")) for s, q in rows]
  songs, problems = match_audio(tree, entries, audio_by_stem(tree))
  return SongTable(name="4qaed", source=tree.root_label, songs=songs, problems=problems,
                   notes=[note])
