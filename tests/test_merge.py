"""MERGE read exactly as released: folders and zips, both TVT variants, bimodal, validation."""

import csv
import math
import os
import shutil

import _fixtures as fx
import pytest

from merjax.data.merge import read_merge, split_file
from merjax.errors import MerjaxError


@pytest.fixture(scope="module")
def merge_root(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("merge"))
  fx.make_merge(root, subset="audio_balanced", seconds=0.3)
  return root


@pytest.fixture(scope="module")
def merge_zip(merge_root, tmp_path_factory):
  only_zip = str(tmp_path_factory.mktemp("merge_zip"))
  return fx.zip_folder(os.path.join(merge_root, "MERGE_Audio_Balanced"),
                       os.path.join(only_zip, "MERGE_Audio_Balanced.zip"))


def _key(table):
  return [(s.song_id, s.quadrant, s.split) for s in table.songs]


@pytest.mark.parametrize("split", ["70_15_15", "40_30_30"])
def test_reads_both_split_variants(merge_root, split):
  table = read_merge(merge_root, subset="audio_balanced", split=split)
  assert table.name == f"merge:audio_balanced:{split}"
  assert not table.problems
  songs = fx.merge_song_ids()
  assert sorted(s.song_id for s in table.songs) == sorted(s for s, _ in songs)
  quadrant = dict(songs)
  for song in table.songs:
    assert song.quadrant == quadrant[song.song_id]
    assert song.split == fx.expected_split(song.song_id, split)
    assert song.audio.path.endswith(os.path.join(f"Q{song.quadrant + 1}", song.song_id + ".mp3"))
    assert 0 <= song.arousal <= 1 and 0 <= song.valence <= 1


def test_zip_gives_the_same_songs(merge_root, merge_zip):
  from_folder = read_merge(os.path.join(merge_root, "MERGE_Audio_Balanced"),
                           subset="audio_balanced")
  from_zip = read_merge(merge_zip, subset="audio_balanced")
  from_parent_of_zip = read_merge(os.path.dirname(merge_zip), subset="audio_balanced")
  assert _key(from_zip) == _key(from_folder) == _key(from_parent_of_zip)
  member = from_zip.songs[0].audio
  assert member.path == merge_zip and member.member.startswith("MERGE_Audio_Balanced/Q")
  assert member.read_bytes() == open(from_folder.songs[0].audio.path, "rb").read()


def test_bimodal_subset_keys_on_audio_song(tmp_path):
  fx.make_merge(str(tmp_path), subset="bimodal_balanced", seconds=0.3)
  table = read_merge(tmp_path, subset="bimodal_balanced", split="40_30_30")
  assert not table.problems and len(table.songs) == 24
  assert all(f"{os.sep}audio{os.sep}Q" in s.audio.path for s in table.songs)
  assert {s.split for s in table.songs} == {"train", "validate", "test"}


@pytest.mark.parametrize("subset", ["lyrics_balanced", "Lyrics_Complete"])
def test_lyrics_subsets_are_refused(merge_root, subset):
  with pytest.raises(MerjaxError, match="lyrics only, no audio"):
    read_merge(merge_root, subset=subset)


def test_unknown_subset_and_split(merge_root):
  with pytest.raises(MerjaxError, match="unknown MERGE subset"):
    read_merge(merge_root, subset="audio_huge")
  with pytest.raises(MerjaxError, match="unknown MERGE split"):
    read_merge(merge_root, subset="audio_balanced", split="80_10_10")


def test_wrong_folder_names_the_expected_files(tmp_path):
  with pytest.raises(MerjaxError, match="merge_audio_balanced_metadata.csv.*MERGE_Audio_Balanced"):
    read_merge(tmp_path, subset="audio_balanced")


def test_missing_split_file(merge_root, tmp_path):
  top = shutil.copytree(os.path.join(merge_root, "MERGE_Audio_Balanced"),
                        tmp_path / "MERGE_Audio_Balanced")
  os.remove(os.path.join(top, split_file("audio_balanced", "70_15_15", "validate")))
  with pytest.raises(MerjaxError,
                     match=r"tvt_70_15_15_validate_audio_balanced\.csv: file not found"):
    read_merge(top, subset="audio_balanced")


def test_columns_by_name_in_any_order(merge_root, tmp_path):
  top = shutil.copytree(os.path.join(merge_root, "MERGE_Audio_Balanced"),
                        tmp_path / "MERGE_Audio_Balanced")
  av = os.path.join(top, "merge_audio_balanced_av_values.csv")
  with open(av, newline="") as f:
    rows = list(csv.DictReader(f))
  with open(av, "w", newline="") as f:  # reordered, with an extra column and padded names
    writer = csv.writer(f)
    writer.writerow([" Valence", "Extra", "Song ", "Arousal"])
    writer.writerows([[r["Valence"], "x", r["Song"], r["Arousal"]] for r in rows])
  original = read_merge(merge_root, subset="audio_balanced")
  reordered = read_merge(top, subset="audio_balanced")
  assert [(s.song_id, s.arousal, s.valence) for s in reordered.songs] == \
      [(s.song_id, s.arousal, s.valence) for s in original.songs]


def test_missing_av_values_gives_nan_and_a_note(merge_root, tmp_path):
  top = shutil.copytree(os.path.join(merge_root, "MERGE_Audio_Balanced"),
                        tmp_path / "MERGE_Audio_Balanced")
  os.remove(os.path.join(top, "merge_audio_balanced_av_values.csv"))
  table = read_merge(top, subset="audio_balanced")
  assert all(math.isnan(s.arousal) for s in table.songs)
  assert any("av_values" in note for note in table.notes)


@pytest.fixture()
def broken(merge_root, tmp_path):
  """A copy with one problem of each kind in the 70-15-15 split."""
  top = shutil.copytree(os.path.join(merge_root, "MERGE_Audio_Balanced"),
                        tmp_path / "MERGE_Audio_Balanced")
  train = os.path.join(top, split_file("audio_balanced", "70_15_15", "train"))
  test = os.path.join(top, split_file("audio_balanced", "70_15_15", "test"))
  os.remove(os.path.join(top, "Q1", "A001.mp3"))                              # missing audio
  shutil.move(os.path.join(top, "Q2", "A007.mp3"), os.path.join(top, "Q3"))   # wrong folder
  fx.edit_csv(test, lambda h, rows: rows + [["A009", "Q2", ""]])             # in two splits
  fx.edit_csv(train, lambda h, rows: [[r[0], "Q5" if r[0] == "A013" else r[1], *r[2:]]
                                      for r in rows])                         # unknown label
  return top


def test_problems_are_reported(broken):
  table = read_merge(broken, subset="audio_balanced")
  reasons = {p.song_id: p.reason for p in table.problems}
  assert set(reasons) == {"A001", "A007", "A009", "A013"}
  assert reasons["A001"].startswith("missing audio") and "Q1/A001.mp3" in reasons["A001"]
  assert reasons["A007"].startswith("quadrant mismatch") and "Q3/A007.mp3" in reasons["A007"]
  assert reasons["A009"] == "listed in both train and test"
  assert "unknown quadrant label 'Q5'" in reasons["A013"]


def test_stop_lists_every_problem(broken):
  table = read_merge(broken, subset="audio_balanced")
  with pytest.raises(MerjaxError) as error:
    table.resolve("stop")
  message = str(error.value)
  assert "4 problem(s) affecting 4 song(s)" in message and "--on-error skip" in message
  for song in ("A001", "A007", "A009", "A013"):
    assert song in message


def test_skip_leaves_the_affected_songs_out(broken):
  table = read_merge(broken, subset="audio_balanced")
  kept = table.resolve("skip")
  assert len(kept) == 20
  assert not {"A001", "A007", "A009", "A013"} & {s.song_id for s in kept}


def test_metadata_quadrant_disagreement(merge_root, tmp_path):
  top = shutil.copytree(os.path.join(merge_root, "MERGE_Audio_Balanced"),
                        tmp_path / "MERGE_Audio_Balanced")
  fx.edit_csv(os.path.join(top, "merge_audio_balanced_metadata.csv"),
              lambda h, rows: [[r[0], "Q4" if r[0] == "A003" else r[1], *r[2:]] for r in rows])
  table = read_merge(top, subset="audio_balanced")
  assert [p.song_id for p in table.problems] == ["A003"]
  assert "metadata says Q4" in table.problems[0].reason
