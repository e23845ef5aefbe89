"""4QAED and folder layouts: drawn, saved and reused stratified splits; CSV lists; problems."""

import csv
import os
import shutil

import _fixtures as fx
import pytest

from merjax.data._index import split_file_name
from merjax.data.folder import read_folder
from merjax.data.fourqaed import read_fourqaed
from merjax.errors import MerjaxError


@pytest.fixture(scope="module")
def fourqaed_src(tmp_path_factory):
  return fx.make_fourqaed(str(tmp_path_factory.mktemp("4qaed")), per_quadrant=7, seconds=0.3)


@pytest.fixture()
def fourqaed(fourqaed_src, tmp_path):
  return shutil.copytree(fourqaed_src, tmp_path / "4QAED")


def _read_split_file(path):
  with open(path, newline="") as f:
    return {r["Song"]: r["Split"] for r in csv.DictReader(f)}


def test_fourqaed_draws_a_stratified_split_and_saves_it(fourqaed):
  table = read_fourqaed(fourqaed, seed=3)
  assert table.name == "4qaed" and not table.problems and len(table.songs) == 28
  for q in range(4):  # 7 per quadrant -> 5/1/1 (70-15-15, largest remainder)
    splits = [s.split for s in table.songs if s.quadrant == q]
    assert (splits.count("train"), splits.count("validate"), splits.count("test")) == (5, 1, 1)
  saved = _read_split_file(os.path.join(fourqaed, split_file_name(3)))
  assert saved == {s.song_id: s.split for s in table.songs}
  assert "saved it to" in table.notes[0]


def test_fourqaed_reuses_the_saved_split(fourqaed):
  first = {s.song_id: s.split for s in read_fourqaed(fourqaed, seed=0).songs}
  path = os.path.join(fourqaed, split_file_name(0))
  # Hand-edit the saved split: the reader must follow the file, not draw again.
  song = next(iter(first))
  moved = "test" if first[song] != "test" else "train"
  fx.edit_csv(path, lambda h, rows: [[r[0], r[1], moved if r[0] == song else r[2]] for r in rows])
  again = read_fourqaed(fourqaed, seed=0)
  assert {s.song_id: s.split for s in again.songs} == {**first, song: moved}
  assert "reused the saved split" in again.notes[0]


def test_fourqaed_same_seed_same_split_in_a_fresh_copy(fourqaed_src, tmp_path):
  a = read_fourqaed(shutil.copytree(fourqaed_src, tmp_path / "a"), seed=5)
  b = read_fourqaed(shutil.copytree(fourqaed_src, tmp_path / "b"), seed=5)
  assert [(s.song_id, s.split) for s in a.songs] == [(s.song_id, s.split) for s in b.songs]


def test_fourqaed_unwritable_folder_uses_the_fallback(fourqaed, tmp_path):
  # A folder where the split file's temporary name is taken by a directory cannot receive the
  # split file (even as root, where permission bits would not stop the write).
  os.makedirs(os.path.join(fourqaed, split_file_name(0) + ".tmp"))
  table = read_fourqaed(fourqaed, fallback_dir=str(tmp_path / "fallback"))
  assert os.path.isfile(tmp_path / "fallback" / split_file_name(0))
  assert not os.path.isfile(os.path.join(fourqaed, split_file_name(0)))
  assert len(table.songs) == 28 and str(tmp_path / "fallback") in table.notes[0]
  again = read_fourqaed(fourqaed, fallback_dir=str(tmp_path / "fallback"))
  assert "reused" in again.notes[0]
  assert [s.split for s in again.songs] == [s.split for s in table.songs]


def test_fourqaed_problems(fourqaed):
  annotations = os.path.join(fourqaed, "panda_dataset_taffc_annotations.csv")
  fx.edit_csv(annotations, lambda h, rows: [[r[0], "Q0" if i == 0 else r[1]]
                                            for i, r in enumerate(rows)])
  songs = [r for r in csv.reader(open(annotations))][1:]
  os.remove(os.path.join(fourqaed, songs[1][1], songs[1][0] + ".mp3"))
  table = read_fourqaed(fourqaed)
  reasons = {p.song_id: p.reason for p in table.problems}
  assert "unknown quadrant label 'Q0'" in reasons[songs[0][0]]
  assert reasons[songs[1][0]].startswith("missing audio")
  assert len(table.resolve("skip")) == 26


def test_fourqaed_from_zip(fourqaed_src, tmp_path):
  folder = shutil.copytree(fourqaed_src, tmp_path / "4QAED")
  os.makedirs(tmp_path / "zips")
  archive = fx.zip_folder(str(folder), str(tmp_path / "zips" / "4QAED.zip"))
  table = read_fourqaed(archive)
  assert len(table.songs) == 28 and table.songs[0].audio.member.startswith("4QAED/Q")
  assert os.path.isfile(tmp_path / "zips" / split_file_name(0))  # next to the archive


def test_folder_without_splits(tmp_path):
  top = fx.make_folder(str(tmp_path), per_quadrant=4, seconds=0.3)
  table = read_folder(top, name="mine", seed=1)
  assert table.name == "folder:mine" and len(table.songs) == 16 and not table.problems
  assert {s.song_id.split("/")[0] for s in table.songs} == {"Q1", "Q2", "Q3", "Q4"}
  assert all(f"Q{s.quadrant + 1}/" in s.song_id for s in table.songs)
  assert os.path.isfile(os.path.join(top, split_file_name(1)))
  assert {s.split for s in table.songs} == {"train", "validate", "test"}


def test_folder_with_split_folders(tmp_path):
  top = fx.make_folder(str(tmp_path), per_quadrant=4, seconds=0.3, with_splits=True)
  table = read_folder(top)
  assert len(table.songs) == 16
  for song in table.songs:
    assert song.song_id.startswith(song.split + "/")
  assert not os.path.exists(os.path.join(top, split_file_name(0)))


def test_folder_with_some_splits_only_is_refused(tmp_path):
  top = fx.make_folder(str(tmp_path), per_quadrant=4, seconds=0.3, with_splits=True)
  fx.write_clip(os.path.join(top, "Q1", "loose.wav"), seconds=0.3)
  with pytest.raises(MerjaxError, match="have a split.*Q1/loose.wav"):
    read_folder(top)


def test_folder_csv(tmp_path):
  top = fx.make_folder(str(tmp_path), per_quadrant=4, seconds=0.3)
  files = sorted(os.path.relpath(os.path.join(d, f), top) for d, _, fs in os.walk(top)
                 for f in fs)
  rows = [[f, f.split(os.sep)[0].lower().replace("q", ""), ("train", "validate", "test")[i % 3]]
          for i, f in enumerate(files)]
  rows[0][1] = "happy"           # unknown quadrant label
  rows[1][0] = "Q9/missing.wav"  # missing file
  rows[2][0] = os.path.join(top, rows[2][0])  # absolute paths work too
  with open(os.path.join(top, "list.csv"), "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["path", "quadrant", "split", "comment"])
    writer.writerows([r + ["-"] for r in rows])
  table = read_folder(os.path.join(top, "list.csv"), name="listed")
  reasons = {p.song_id: p.reason for p in table.problems}
  assert "unknown quadrant label 'happy'" in reasons[os.path.splitext(files[0])[0]]
  assert reasons["Q9/missing"].startswith("missing audio")
  assert len(table.songs) == 14 and table.songs[0].audio.path == rows[2][0]
  for song, row in zip(table.songs, rows[2:]):
    assert song.split == row[2] and song.quadrant == int(row[1]) - 1


def test_folder_from_zip(tmp_path):
  top = fx.make_folder(str(tmp_path / "src"), per_quadrant=4, seconds=0.3)
  archive = fx.zip_folder(top)
  table = read_folder(archive, name="zipped")
  assert len(table.songs) == 16 and all(s.audio.member for s in table.songs)


def test_folder_without_audio(tmp_path):
  with pytest.raises(MerjaxError, match="no audio files"):
    read_folder(tmp_path)
