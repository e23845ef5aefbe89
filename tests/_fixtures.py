"""Small dataset trees in the exact released layouts (MERGE, 4QAED) and folder layouts.

Clips are short real audio files (MP3 by default, written by libsndfile) at mixed rates and
channel counts, so the readers, decoders and stores see what the real releases hold.
"""

from __future__ import annotations

import csv
import os
import shutil
import zipfile

import numpy as np
import soundfile as sf

QUADRANTS = ("Q1", "Q2", "Q3", "Q4")
# (sample rate, channels) cycled over the clips: 44.1 kHz stereo, 48 kHz mono, 22.05 kHz stereo.
FORMATS = ((44100, 2), (48000, 1), (22050, 2))
_SF_FORMAT = {".mp3": "MP3", ".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG"}


def write_clip(path: str, *, seconds: float = 1.0, sample_rate: int = 44100, channels: int = 2,
               seed: int = 0) -> str:
  """A tone chord plus noise, different for every seed."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * sample_rate)) / sample_rate
  freqs = 110.0 * 2 ** (rng.integers(0, 36, size=(channels, 3)) / 12)
  y = np.sin(2 * np.pi * freqs[:, :, None] * t).sum(axis=1) / 4
  y = (y + 0.02 * rng.standard_normal(y.shape)).T.astype(np.float32)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  ext = os.path.splitext(path)[1].lower()
  sf.write(path, y if channels > 1 else y[:, 0], sample_rate, format=_SF_FORMAT[ext])
  return path


def _write_csv(path: str, header: list[str], rows: list[list]) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, "w", newline="", encoding="utf-8") as f:
    writer = csv.writer(f)
    writer.writerow(header)
    writer.writerows(rows)


# Per quadrant (6 songs): which split each song is in, for both TVT variants.
_TVT = {"70_15_15": ["train"] * 4 + ["validate", "test"],
        "40_30_30": ["train", "train", "validate", "validate", "test", "test"]}


def merge_song_ids(per_quadrant: int = 6) -> list[tuple[str, int]]:
  """(song id, quadrant) pairs: private ``A``-ids and AllMusic ``MT``-ids alternate."""
  out = []
  for q in range(4):
    for k in range(per_quadrant):
      n = q * per_quadrant + k
      out.append((f"A{n + 1:03d}" if k % 2 == 0 else f"MT{1000000000 + n:010d}", q))
  return out


def make_merge(root: str, *, subset: str = "audio_balanced", seconds: float = 1.0,
               per_quadrant: int = 6) -> str:
  """A MERGE subset folder (``MERGE_Audio_Balanced/`` ...) with both TVT split variants.

  Returns:
    The path of the subset folder.
  """
  name = "MERGE_" + "_".join(w.capitalize() for w in subset.split("_"))
  top = os.path.join(root, name)
  bimodal = subset.startswith("bimodal")
  audio_root = os.path.join(top, "audio") if bimodal else top
  songs = merge_song_ids(per_quadrant)
  meta_rows, av_rows = [], []
  for n, (song, q) in enumerate(songs):
    rate, channels = FORMATS[n % len(FORMATS)]
    write_clip(os.path.join(audio_root, QUADRANTS[q], song + ".mp3"), seconds=seconds,
               sample_rate=rate, channels=channels, seed=n)
    lyric = f"L{n + 1:03d}"
    if bimodal:
      os.makedirs(os.path.join(top, "lyrics", QUADRANTS[q]), exist_ok=True)
      with open(os.path.join(top, "lyrics", QUADRANTS[q], lyric + ".txt"), "w") as f:
        f.write("la la la\n")
    key = [song, lyric] if bimodal else [song]
    meta_rows.append(key + [QUADRANTS[q], f"MW{n:010d}", f"Artist {n}", f"Title, {n}", 0.5])
    av_rows.append(key + [round(0.1 + 0.8 * (q in (0, 1)) * 0.9, 3), round(0.05 * n % 1, 3)])
  key_header = ["Audio_Song", "Lyric_Song"] if bimodal else ["Song"]
  _write_csv(os.path.join(top, f"merge_{subset}_metadata.csv"),
             key_header + ["Quadrant", "AllMusic Id", "Artist", "Title", "Relevance"], meta_rows)
  _write_csv(os.path.join(top, f"merge_{subset}_av_values.csv"),
             key_header + ["Arousal", "Valence"], av_rows)
  for variant, parts in _TVT.items():
    for part in ("train", "validate", "test"):
      rows = [[song, QUADRANTS[q], "extra"] for n, (song, q) in enumerate(songs)
              if parts[n % per_quadrant] == part]
      header = ["Audio_Song" if bimodal else "Song", "Quadrant", "Unused"]
      _write_csv(os.path.join(top, "tvt_dataframes", f"tvt_{variant}",
                              f"tvt_{variant}_{part}_{subset}.csv"), header, rows)
  return top


def expected_split(song: str, variant: str = "70_15_15", per_quadrant: int = 6) -> str:
  index = [s for s, _ in merge_song_ids(per_quadrant)].index(song)
  return _TVT[variant][index % per_quadrant]


def zip_folder(folder: str, zip_path: str | None = None) -> str:
  """Zips ``folder`` with its own name as the top folder, as the releases are zipped."""
  zip_path = zip_path or folder.rstrip("/") + ".zip"
  parent = os.path.dirname(folder.rstrip("/"))
  with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as z:
    for dirpath, _, files in os.walk(folder):
      for f in sorted(files):
        full = os.path.join(dirpath, f)
        z.write(full, os.path.relpath(full, parent))
  return zip_path


def edit_csv(path: str, edit) -> None:
  """Rewrites a CSV: ``edit(header, rows)`` returns the new rows."""
  with open(path, newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
  _write_csv(path, rows[0], edit(rows[0], rows[1:]))


def make_fourqaed(root: str, *, per_quadrant: int = 5, seconds: float = 1.0) -> str:
  """A 4QAED folder: MP3s in Q1..Q4 and ``panda_dataset_taffc_annotations.csv``."""
  top = os.path.join(root, "4QAED")
  rows = []
  for q in range(4):
    for k in range(per_quadrant):
      n = q * per_quadrant + k
      song = f"MT{2000000000 + n:010d}"
      rate, channels = FORMATS[n % len(FORMATS)]
      write_clip(os.path.join(top, QUADRANTS[q], song + ".mp3"), seconds=seconds,
                 sample_rate=rate, channels=channels, seed=100 + n)
      rows.append([song, QUADRANTS[q]])
  _write_csv(os.path.join(top, "panda_dataset_taffc_annotations.csv"), ["Song", "Quadrant"], rows)
  _write_csv(os.path.join(top, "panda_dataset_taffc_metadata.csv"), ["Song", "Artist"],
             [[r[0], "someone"] for r in rows])
  return top


def make_folder(root: str, *, per_quadrant: int = 4, seconds: float = 1.0,
                with_splits: bool = False, exts=(".wav", ".flac", ".ogg", ".mp3")) -> str:
  """A user folder: ``Q1..Q4/clip*.ext`` (or ``<split>/Qn/...`` with ``with_splits``)."""
  top = os.path.join(root, "mine")
  for q in range(4):
    for k in range(per_quadrant):
      n = q * per_quadrant + k
      split = ("train", "train", "validate", "test")[k % 4]
      folder = os.path.join(top, split, QUADRANTS[q]) if with_splits else os.path.join(
          top, QUADRANTS[q])
      rate, channels = FORMATS[n % len(FORMATS)]
      write_clip(os.path.join(folder, f"clip{n:02d}{exts[n % len(exts)]}"), seconds=seconds,
                 sample_rate=rate, channels=channels, seed=200 + n)
  return top


def copy_tree(src: str, dst: str) -> str:
  shutil.copytree(src, dst)
  return dst
