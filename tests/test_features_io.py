"""Table import (4QAED conventions), the per-song cache, the dataset helper and the CLI."""

import functools

import numpy as np
import pytest

from merjax import cli
from merjax.errors import MerjaxError
from merjax.features import (
  FeatureSet,
  backend_key,
  cache_directory,
  extract_cached,
  extract_features,
  feature_names,
  read_feature_table,
  table_features,
)
from merjax.features.datasets import dataset_features

# -- table import -----------------------------------------------------------------------------


def _write_4qaed(path, songs, *, missing_value_row=None):
  """A small table in the layout of the 4QAED all_features.csv."""
  header = ["Song", "F0001", "F0002", "F0898", "ORIGINAL-Melodic (mean)", "VOICE-Vibrato rate",
            "Quadrant", "Artist"]
  lines = [",".join(header)]
  for i, song in enumerate(songs):
    values = [f"{i + 0.5}", f"{-i}", f"{i * 1e-3:.3e}", f"{2 * i}", f"{i % 3}"]
    if i == missing_value_row:
      values[1] = "NA"
    lines.append(",".join([song, *values, f"Q{i % 4 + 1}", f'"Artist, {i}"']))
  path.write_text("\n".join(lines) + "\n")


def test_reads_the_4qaed_layout(tmp_path):
  songs = [f"MT000{i:07d}" for i in range(6)]
  _write_4qaed(tmp_path / "all_features.csv", songs, missing_value_row=2)
  table = read_feature_table(tmp_path / "all_features.csv")
  assert table.backend == "table" and list(table.song_ids) == songs
  assert table.names == ["F0001", "F0002", "F0898", "ORIGINAL-Melodic (mean)",
                         "VOICE-Vibrato rate"]  # Quadrant and Artist are not features
  assert table.values.dtype == np.float32 and table.values.shape == (6, 5)
  assert table.values[3, 0] == 3.5 and table.values[4, 2] == pytest.approx(4e-3)
  assert np.isnan(table.values[2, 1])
  picked = table_features(tmp_path / "all_features.csv", [songs[4], songs[1]])
  np.testing.assert_array_equal(picked.values, table.values[[4, 1]])
  assert list(picked.song_ids) == [songs[4], songs[1]]


def test_missing_rows_are_listed(tmp_path):
  _write_4qaed(tmp_path / "t.csv", ["A001", "A002", "A003"])
  with pytest.raises(MerjaxError, match=r"no row for 2 song\(s\) of the dataset: A004, B9"):
    table_features(tmp_path / "t.csv", ["A001", "B9", "A004"])


def test_other_tables_with_a_chosen_id_column(tmp_path):
  path = tmp_path / "mine.csv"
  path.write_text("title;track;energy;tempo\nsong a;t1;0,5;120\nsong b;t2;0,25;NA\n")
  with pytest.warns(UserWarning, match="title"):
    table = read_feature_table(path, id_column="track")
  assert table.names == ["energy", "tempo"] and list(table.song_ids) == ["t1", "t2"]
  np.testing.assert_array_equal(table.values, [[0.5, 120.0], [0.25, np.nan]])
  only = read_feature_table(path, id_column="track", columns=["tempo"])
  assert only.names == ["tempo"]
  with pytest.raises(MerjaxError, match="no id column 'Song'"):
    read_feature_table(path, id_column="Song")
  with pytest.raises(MerjaxError, match="lacks column"):
    read_feature_table(path, id_column="track", columns=["loudness"])
  with pytest.raises(MerjaxError, match="column 'title'"):
    read_feature_table(path, id_column="track", columns=["title"])


def test_bad_tables(tmp_path):
  (tmp_path / "dup.csv").write_text("Song,F0001\nA1,1\nA1,2\n")
  with pytest.raises(MerjaxError, match="several rows for song.*A1"):
    read_feature_table(tmp_path / "dup.csv")
  (tmp_path / "ragged.csv").write_text("Song,F0001\nA1,1,3\n")
  with pytest.raises(MerjaxError, match=r"row\(s\) 2"):
    read_feature_table(tmp_path / "ragged.csv")
  (tmp_path / "empty.csv").write_text("Song,F0001\n")
  with pytest.raises(MerjaxError, match="no data rows"):
    read_feature_table(tmp_path / "empty.csv")
  with pytest.raises(MerjaxError, match="cannot read"):
    read_feature_table(tmp_path / "absent.csv")


# -- per-song cache ---------------------------------------------------------------------------


def _tone(freq, calls=None):
  if calls is not None:
    calls.append(freq)
  t = np.arange(8000) / 16000
  return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def test_cache_is_resumable_and_keyed_by_backend_version(tmp_path):
  calls = []
  items = [(f"S{i}", functools.partial(_tone, 200.0 + 100 * i, calls)) for i in range(3)]
  first = extract_cached(items[:2], cache_dir=tmp_path)  # an "interrupted" run
  assert calls == [200.0, 300.0]
  both = extract_cached(items, cache_dir=tmp_path)
  assert calls == [200.0, 300.0, 400.0]  # only the new song was extracted
  np.testing.assert_array_equal(both.values[:2], first.values)
  assert list(both.song_ids) == ["S0", "S1", "S2"] and both.names == feature_names()
  directory = cache_directory(tmp_path)
  assert directory.name == f"builtin-{backend_key('builtin')}"
  assert (directory / "S2.npy").exists() and (directory / "backend.json").exists()
  # A damaged entry is extracted again; a different sample rate is a different cache.
  (directory / "S1.npy").write_bytes(b"garbage")
  extract_cached(items, cache_dir=tmp_path)
  assert calls[-1] == 300.0 and len(calls) == 4
  assert cache_directory(tmp_path, sample_rate=22050) != directory


@pytest.mark.slow  # starts worker processes
def test_cache_handles_odd_ids_duplicates_and_unpicklable_loaders(tmp_path):
  items = [("a/b c", _tone(300.0)), ("MT1", lambda: _tone(500.0))]
  features = extract_cached(items, cache_dir=tmp_path, workers=2)
  np.testing.assert_array_equal(features.values[1],
                                extract_cached(items[1:], cache_dir=tmp_path).values[0])
  assert not any("/" in p.name or " " in p.name for p in cache_directory(tmp_path).iterdir())
  with pytest.raises(MerjaxError, match="duplicate song ids: x"):
    extract_cached([("x", _tone(1.0)), ("x", _tone(2.0))], cache_dir=tmp_path)


def test_featureset_save_load_and_select(tmp_path):
  fs = FeatureSet(np.array(["a", "b"]), ["f1", "f2"], np.arange(4, dtype=np.float32).reshape(2, 2),
                  "builtin")
  fs.save(tmp_path / "f.npz")
  back = FeatureSet.load(tmp_path / "f.npz")
  assert back.names == ["f1", "f2"] and back.backend == "builtin"
  np.testing.assert_array_equal(back.values, fs.values)
  assert list(back.select(["b", "a"]).song_ids) == ["b", "a"]
  with pytest.raises(MerjaxError, match="1 song.*: c"):
    back.select(["a", "c"])
  with pytest.raises(MerjaxError, match="cannot read"):
    FeatureSet.load(tmp_path / "nothing.npz")


# -- dataset helper and CLI -------------------------------------------------------------------


def test_dataset_features_for_the_synthetic_set(tmp_path):
  kwargs = dict(data_dir=tmp_path, clips_per_quadrant=1, seconds=1.0, seed=3)
  features, directory = dataset_features("synthetic", **kwargs)
  assert list(features.song_ids) == ["SYN-Q1-0000", "SYN-Q2-0000", "SYN-Q3-0000", "SYN-Q4-0000"]
  assert directory.parent == tmp_path / "features"
  table = tmp_path / "t.csv"
  table.write_text("Song,F0001\nSYN-Q1-0000,1\nSYN-Q2-0000,2\n")
  with pytest.raises(MerjaxError, match="SYN-Q3-0000, SYN-Q4-0000"):
    dataset_features("synthetic", backend="table", table=table, **kwargs)


def test_cli_extracts_imports_and_writes_the_manifest(tmp_path, capsys):
  common = ["--dataset", "synthetic", "--clips-per-quadrant", "1", "--seconds", "1",
            "--data-dir", str(tmp_path), "--no-progress"]
  assert cli.main(["features", *common, "--workers", "1", "--manifest",
                   str(tmp_path / "manifest.csv")]) == 0
  out = capsys.readouterr().out
  assert "4 songs x" in out and "manifest" in out
  features = FeatureSet.load(next((tmp_path / "features").glob("synthetic-*/builtin.npz")))
  assert features.values.shape == (4, len(feature_names()))
  assert (tmp_path / "manifest.csv").read_text().startswith("name,dimension,description")

  table = tmp_path / "all_features.csv"
  _write_4qaed(table, [f"SYN-Q{q}-0000" for q in range(1, 5)])
  target = tmp_path / "table.npz"
  assert cli.main(["features", *common, "--backend", "table", "--table", str(table), "--out",
                   str(target)]) == 0
  assert FeatureSet.load(target).names[0] == "F0001"


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "synthetic", "--backend", "table"], "needs the CSV"),
    (["--dataset", "synthetic", "--clips-per-quadrant", "0"], "clips_per_quadrant"),
    (["--dataset", "synthetic", "--workers", "0"], "--workers"),
    (["--dataset", "merge:audio_balanced"], "merjax prepare"),
    ([], "--dataset"),
])
def test_cli_bad_input_is_one_line(tmp_path, capsys, argv, message):
  assert cli.main(["features", "--data-dir", str(tmp_path), *argv]) == 2
  err = capsys.readouterr().err
  assert message in err and err.count("\n") == 1 and "Traceback" not in err


def test_cli_reads_a_prepared_store(tmp_path, capsys):
  import soundfile as sf

  from merjax.data.synthetic import clip
  for q in range(4):
    (tmp_path / "songs" / f"Q{q + 1}").mkdir(parents=True)
    for i in range(3):
      sf.write(tmp_path / "songs" / f"Q{q + 1}" / f"s{q}{i}.wav",
               clip(q, i, seconds=1.0)[0], 16000)
  data_dir = str(tmp_path / "data")
  assert cli.main(["prepare", "folder", "--path", str(tmp_path / "songs"), "--name", "tiny",
                   "--data-dir", data_dir, "--clip-seconds", "1", "--workers", "1",
                   "--no-progress"]) == 0
  assert cli.main(["features", "--dataset", "folder:tiny", "--data-dir", data_dir,
                   "--workers", "1", "--no-progress"]) == 0
  assert "folder:tiny: 12 songs" in capsys.readouterr().out
  from merjax.data.store import open_prepared
  store = open_prepared("folder:tiny", data_dir)
  features = FeatureSet.load(tmp_path / "data" / "features" / "folder_tiny" / "builtin.npz")
  np.testing.assert_array_equal(features.song_ids, store.song_ids)
  np.testing.assert_array_equal(features.values[5], extract_features(store.waveform(5)[None])[0])
