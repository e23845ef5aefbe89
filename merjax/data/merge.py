"""The MERGE dataset (Louro et al. 2024; Zenodo record 13939205) read exactly as released.

Every audio-bearing subset is supported, from the unzipped folder or straight from its zip::

  MERGE_Audio_Balanced/                    (Audio Complete / Balanced)
    Q1/ .. Q4/<Song>.mp3
    merge_audio_balanced_metadata.csv      Song, Quadrant, ...
    merge_audio_balanced_av_values.csv     Song, Arousal, Valence
    tvt_dataframes/tvt_70_15_15/tvt_70_15_15_{train,validate,test}_audio_balanced.csv
    tvt_dataframes/tvt_40_30_30/tvt_40_30_30_{train,validate,test}_audio_balanced.csv
  MERGE_Bimodal_Balanced/                  (Bimodal Complete / Balanced)
    audio/Q1..Q4/<Audio_Song>.mp3   lyrics/Q1..Q4/*.txt
    merge_bimodal_balanced_metadata.csv    Audio_Song, Lyric_Song, Quadrant, ...
    ...                                    (the CSVs key on Audio_Song)

Columns are read by name and extra columns are ignored. The split lists are checked against the
audio folders: a listed song without audio in its quadrant's folder, a song listed in two
splits, a quadrant that disagrees with the folder or the metadata, and an unknown quadrant
label are all reported as problems.

References:
  Louro, Redinho, Malheiro, Paiva, Panda, "MERGE - A Bimodal Dataset for Static Music Emotion
  Recognition", arXiv:2407.06060, 2024.
"""

from __future__ import annotations

import math
import os

from merjax.data._index import (
  Entry,
  Problem,
  SongTable,
  audio_by_stem,
  match_audio,
  parse_float,
  parse_quadrant,
  read_csv,
)
from merjax.data._tree import locate
from merjax.data.splits import SPLITS
from merjax.errors import MerjaxError

SUBSETS: tuple[str, ...] = ("audio_complete", "audio_balanced", "bimodal_complete",
                            "bimodal_balanced")
LYRICS_SUBSETS: tuple[str, ...] = ("lyrics_complete", "lyrics_balanced")
SPLIT_VARIANTS: tuple[str, ...] = ("70_15_15", "40_30_30")


def check_subset(subset: str) -> str:
  """Normalises a subset name (``Audio_Balanced``, ``audio-balanced`` ...) or explains why not."""
  key = subset.strip().lower().replace("-", "_").removeprefix("merge_")
  if key in LYRICS_SUBSETS:
    raise MerjaxError(f"MERGE subset {subset!r} holds lyrics only, no audio; use one of "
                      f"{', '.join(SUBSETS)}")
  if key not in SUBSETS:
    raise MerjaxError(f"unknown MERGE subset {subset!r}; expected one of {', '.join(SUBSETS)}")
  return key


def check_split(split: str) -> str:
  key = split.strip().lower().replace("-", "_").removeprefix("tvt_")
  if key not in SPLIT_VARIANTS:
    raise MerjaxError(f"unknown MERGE split {split!r}; expected one of {', '.join(SPLIT_VARIANTS)}")
  return key


def folder_name(subset: str) -> str:
  """The released top-level folder (and zip) name, e.g. ``MERGE_Audio_Balanced``."""
  return "MERGE_" + "_".join(w.capitalize() for w in check_subset(subset).split("_"))


def metadata_file(subset: str) -> str:
  return f"merge_{check_subset(subset)}_metadata.csv"


def av_values_file(subset: str) -> str:
  return f"merge_{check_subset(subset)}_av_values.csv"


def split_file(subset: str, split: str, part: str) -> str:
  """Relative path of one TVT list.

  For example ``tvt_dataframes/tvt_70_15_15/tvt_70_15_15_train_audio_balanced.csv``.
  """
  split = check_split(split)
  return f"tvt_dataframes/tvt_{split}/tvt_{split}_{part}_{check_subset(subset)}.csv"


def _key_columns(subset: str) -> tuple[str, ...]:
  return ("Audio_Song", "Song") if subset.startswith("bimodal") else ("Song",)


def read_merge(path: str | os.PathLike, *, subset: str, split: str = "70_15_15") -> SongTable:
  """Reads one MERGE subset and one of its TVT splits, and checks it against the audio folders.

  Args:
    path: the unzipped subset folder, its zip archive, or a folder containing either.
    subset: ``audio_complete``, ``audio_balanced``, ``bimodal_complete`` or ``bimodal_balanced``.
    split: ``70_15_15`` (the paper's protocol) or ``40_30_30``.

  Returns:
    A :class:`SongTable` named ``merge:<subset>:<split>`` with one song per split entry, arousal
    and valence from the av_values file, and the problems found.

  Raises:
    MerjaxError: a lyrics subset, or a missing release file or column.
  """
  subset, split = check_subset(subset), check_split(split)
  tree = locate(path, marker=metadata_file(subset), top_folder=folder_name(subset))
  keys = _key_columns(subset)

  metadata = read_csv(tree, metadata_file(subset))
  meta_quadrant = dict(zip(metadata.column(*keys), metadata.column("Quadrant")))
  notes = []
  av: dict[str, tuple[float, float]] = {}
  if tree.exists(av_values_file(subset)):
    table = read_csv(tree, av_values_file(subset))
    av = {s: (parse_float(a), parse_float(v)) for s, a, v in
          zip(table.column(*keys), table.column("Arousal"), table.column("Valence"))}
  else:
    notes.append(f"{tree.label(av_values_file(subset))} not found: arousal and valence are NaN")

  entries, problems = [], []
  for part in SPLITS:
    table = read_csv(tree, split_file(subset, split, part))
    songs = table.column(*keys)
    quadrants = (table.column("Quadrant") if table.has("Quadrant")
                 else [meta_quadrant.get(s, "") for s in songs])
    for song_id, quadrant in zip(songs, quadrants):
      if not song_id:
        continue
      listed = meta_quadrant.get(song_id)
      if (listed is not None and parse_quadrant(listed) is not None
          and parse_quadrant(quadrant) is not None
          and parse_quadrant(listed) != parse_quadrant(quadrant)):
        problems.append(Problem(song_id, f"quadrant mismatch: the {part} list says {quadrant} "
                                         f"but the metadata says {listed}"))
      arousal, valence = av.get(song_id, (math.nan, math.nan))
      entries.append(Entry(song_id, quadrant, part, arousal, valence))

  folder = "audio" if subset.startswith("bimodal") else ""
  matched, audio_problems = match_audio(tree, entries, audio_by_stem(tree, folder), folder)
  return SongTable(name=f"merge:{subset}:{split}", source=tree.root_label,
                   songs=matched, problems=problems + audio_problems, notes=notes)
