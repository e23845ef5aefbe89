"""merjax prepare and the prepared store: TFDS array_record shards, resumable decoding."""

import os
import pickle
import shutil
import subprocess
import sys
import warnings

import _fixtures as fx
import librosa
import numpy as np
import pytest

from merjax.audio.io import fix_length
from merjax.data import prepare as prepare_module
from merjax.data.merge import read_merge
from merjax.data.prepare import cache_dir, prepare
from merjax.data.store import open_prepared, parse_dataset
from merjax.errors import MerjaxError

CLIP = 1.0


@pytest.fixture(scope="module")
def merge_zip(tmp_path_factory):
  root = str(tmp_path_factory.mktemp("release"))
  top = fx.make_merge(root, subset="audio_balanced", seconds=1.2)
  archive = fx.zip_folder(top)
  shutil.rmtree(top)  # only the zip is left, as downloaded
  return archive


@pytest.fixture(scope="module")
def prepared(merge_zip, tmp_path_factory):
  data_dir = str(tmp_path_factory.mktemp("data"))
  summary = prepare("merge:audio_balanced", manual_dir=os.path.dirname(merge_zip),
                    data_dir=data_dir, clip_seconds=CLIP, workers=2, progress=False)
  return summary, data_dir


_WITHOUT_TENSORFLOW = """
import sys

class WithoutTensorFlow:  # every finder acts as if TensorFlow were not installed
  def __init__(self, finder):
    self.finder = finder

  def __getattr__(self, name):
    return getattr(self.finder, name)

  def find_spec(self, name, path=None, target=None):
    if name == "tensorflow" or name.startswith("tensorflow."):
      return None
    return self.finder.find_spec(name, path, target)

sys.meta_path[:] = [WithoutTensorFlow(f) for f in sys.meta_path]
import importlib.util
assert importlib.util.find_spec("tensorflow") is None
sys.path[:0] = sys.argv[1:3]
import _fixtures as fx
import tensorflow_datasets as tfds
from merjax.data.prepare import prepare
from merjax.data.store import open_prepared

src = fx.make_folder(sys.argv[3] + "/src", per_quadrant=3, seconds=0.3)
summary = prepare("folder:notf", manual_dir=src, data_dir=sys.argv[3] + "/data",
                  clip_seconds=0.25, workers=1, progress=False)
ds = open_prepared("folder:notf", sys.argv[3] + "/data")
source = tfds.builder_from_directory(ds.path).as_data_source(split="train")
assert source[0]["waveform"].shape == (4000,), source[0]["waveform"].shape
assert len(ds) == 12 and ds.waveforms().shape == (12, 4000)
assert "tensorflow" not in sys.modules
print("ok without tensorflow", summary.total)
"""


def test_prepare_and_read_without_tensorflow(tmp_path):
  tests = os.path.dirname(__file__)
  result = subprocess.run(
      [sys.executable, "-c", _WITHOUT_TENSORFLOW, tests, os.path.dirname(tests), str(tmp_path)],
      capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "ok without tensorflow 12" in result.stdout


def test_prepare_merge_from_the_zip(prepared, merge_zip):
  summary, data_dir = prepared
  assert summary.dataset == "merge:audio_balanced:70_15_15" and summary.decoded == 24
  assert summary.counts == {"train": [4, 4, 4, 4], "validate": [1, 1, 1, 1],
                            "test": [1, 1, 1, 1]}
  assert not summary.skipped
  assert "removed 24 decoded clip(s)" in summary.notes[-1]
  assert not os.listdir(cache_dir(data_dir, sample_rate=16000, clip_seconds=CLIP))
  text = summary.format()
  assert "train" in text and "      4      4      4      4      16" in text


def test_store_matches_the_release_and_librosa(prepared, merge_zip, tmp_path):
  _, data_dir = prepared
  ds = open_prepared("merge:audio_balanced", data_dir)
  table = read_merge(merge_zip, subset="audio_balanced")
  order = {"train": 0, "validate": 1, "test": 2}
  expected = sorted(table.songs, key=lambda s: order[s.split])  # stable: list order kept
  assert ds.name == "merge:audio_balanced:70_15_15" and len(ds) == 24
  assert ds.song_ids.tolist() == [s.song_id for s in expected]
  assert ds.labels.tolist() == [s.quadrant for s in expected]
  assert ds.splits.tolist() == [s.split for s in expected]
  np.testing.assert_allclose(ds.arousal, [s.arousal for s in expected], rtol=1e-6)
  np.testing.assert_allclose(ds.durations, 1.2, atol=0.06)  # MP3 frames round the length
  assert ds.sample_rate == 16000 and ds.clip_samples == 16000
  for i in (0, 7, 23):
    path = tmp_path / f"{i}.mp3"
    path.write_bytes(expected[i].audio.read_bytes())
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      reference = fix_length(librosa.load(path, sr=16000)[0], size=16000)
    waveform = ds.waveform(i)
    assert waveform.dtype == np.float32 and waveform.shape == (16000,)
    assert np.max(np.abs(waveform - reference)) <= 1 / 32768 + 1e-7  # int16 storage


def test_store_is_a_tfds_array_record_dataset_readable_without_tensorflow(prepared):
  import tensorflow_datasets as tfds

  from merjax.data.tfds_merge import Merge  # registers the builder

  _, data_dir = prepared
  ds = open_prepared("merge:audio_balanced", data_dir)
  assert any(f.startswith("merge-train.array_record") for f in os.listdir(ds.path))
  source = tfds.data_source("merge/audio_balanced_70_15_15", data_dir=data_dir, split="test")
  builder = Merge(config="audio_balanced_70_15_15", data_dir=data_dir)
  assert len(source) == 4 and len(builder.as_data_source(split="train")) == 16
  record = source[2]
  assert record["waveform"].dtype == np.int16 and record["waveform"].shape == (16000,)
  test = ds.indices("test")
  assert record["song_id"].decode() == ds.song_ids[test[2]]
  assert record["quadrant"] == ds.labels[test[2]] and record["split"].decode() == "test"
  np.testing.assert_array_equal(record["waveform"], ds[test[2]]["waveform"])
  assert "tensorflow" not in sys.modules


def test_prepared_dataset_api(prepared):
  import grain

  _, data_dir = prepared
  ds = open_prepared("merge:audio_balanced", data_dir)
  train = ds.indices("train")
  assert train.tolist() == list(range(16)) and ds.indices("validate").tolist() == [16, 17, 18, 19]
  item = ds[5]
  assert set(item) == {"waveform", "label", "index"} and item["index"] == 5
  assert item["label"] == ds.labels[5]
  batch = ds.gather([3, 20, 3])
  assert batch["waveform"].shape == (3, 16000)
  assert batch["label"].tolist() == ds.labels[[3, 20, 3]].tolist()
  np.testing.assert_array_equal(batch["waveform"][0], batch["waveform"][2])
  np.testing.assert_allclose(ds.waveforms([20])[0], ds.waveform(20))
  clone = pickle.loads(pickle.dumps(ds))
  np.testing.assert_array_equal(clone[9]["waveform"], ds[9]["waveform"])
  assert grain.MapDataset.source(ds)[4]["index"] == 4
  with pytest.raises(IndexError):
    ds[24]
  with pytest.raises(MerjaxError, match="unknown split"):
    ds.indices("val")


def test_prepare_again_reuses_or_refuses_changed_settings(prepared, merge_zip):
  _, data_dir = prepared
  again = prepare("merge:audio_balanced", manual_dir=merge_zip, data_dir=data_dir,
                  clip_seconds=CLIP, progress=False)
  assert again.already_prepared and again.counts["train"] == [4, 4, 4, 4]
  with pytest.raises(MerjaxError, match=r"clip_seconds=1\.0 \(asked 0\.5\).*--overwrite"):
    prepare("merge:audio_balanced", manual_dir=merge_zip, data_dir=data_dir,
            clip_seconds=0.5, progress=False)


def _broken_release(merge_zip, tmp_path):
  """The release unzipped, with one corrupt and one empty MP3."""
  shutil.unpack_archive(merge_zip, tmp_path)
  top = tmp_path / "MERGE_Audio_Balanced"
  corrupt = top / "Q2" / "A007.mp3"
  data = bytearray(corrupt.read_bytes())
  data[len(data) // 4:len(data) // 4 + 1500] = bytes(1500)
  corrupt.write_bytes(bytes(data))
  (top / "Q4" / "A019.mp3").write_bytes(b"")
  return top


def test_decode_errors_stop_then_a_rerun_resumes(merge_zip, tmp_path, monkeypatch):
  top = _broken_release(merge_zip, tmp_path / "release")
  data_dir = str(tmp_path / "data")
  with pytest.raises(MerjaxError) as error:
    prepare("merge:audio_balanced", manual_dir=top, data_dir=data_dir, clip_seconds=CLIP,
            workers=1, progress=False)
  message = str(error.value)
  assert "2 problem(s)" in message and "a rerun reuses them" in message
  assert "A007.mp3: cannot decode" in message and "A019.mp3: empty file" in message
  cache = cache_dir(data_dir, sample_rate=16000, clip_seconds=CLIP)
  assert len(os.listdir(cache)) == 22  # the good clips were kept

  calls = []
  real = prepare_module.load_audio
  monkeypatch.setattr(prepare_module, "load_audio",
                      lambda *a, **k: calls.append(k.get("name")) or real(*a, **k))
  summary = prepare("merge:audio_balanced", manual_dir=top, data_dir=data_dir,
                    clip_seconds=CLIP, workers=1, on_error="skip", progress=False, keep_cache=True)
  assert summary.decoded == 0 and summary.reused == 22
  assert sorted(os.path.basename(c) for c in calls) == ["A007.mp3", "A019.mp3"]  # retried only
  assert {p.song_id for p in summary.skipped} == {"A007", "A019"}
  assert sum(map(sum, summary.counts.values())) == 22
  text = summary.format()
  assert "skipped 2 song(s)" in text and "A019: " in text and "empty file" in text
  ds = open_prepared("merge:audio_balanced", data_dir)
  assert len(ds) == 22 and {"A007", "A019"}.isdisjoint(ds.song_ids.tolist())
  assert [p.song_id for p in ds.summary().skipped] == ["A007", "A019"]
  assert len(os.listdir(cache)) == 22  # keep_cache


def test_validation_problems_skip(merge_zip, tmp_path):
  top = _broken_release(merge_zip, tmp_path / "release")
  os.remove(top / "Q1" / "A001.mp3")
  with pytest.raises(MerjaxError, match="A001: missing audio"):
    prepare("merge:audio_balanced", manual_dir=top, data_dir=tmp_path / "data",
            clip_seconds=CLIP, workers=1, progress=False)
  summary = prepare("merge:audio_balanced", manual_dir=top, data_dir=tmp_path / "data",
                    clip_seconds=CLIP, workers=1, on_error="skip", progress=False)
  assert [p.song_id for p in summary.skipped] == ["A001", "A007", "A019"]
  assert summary.total == 21


def test_overwrite_rebuilds_from_the_cache(merge_zip, tmp_path):
  data_dir = tmp_path / "data"
  first = prepare("merge:audio_balanced:40_30_30", manual_dir=merge_zip, data_dir=data_dir,
                  clip_seconds=CLIP, workers=1, progress=False, keep_cache=True)
  assert first.counts["test"] == [2, 2, 2, 2] and first.decoded == 24
  again = prepare("merge:audio_balanced:40_30_30", manual_dir=merge_zip, data_dir=data_dir,
                  clip_seconds=CLIP, workers=1, progress=False, overwrite=True)
  assert again.decoded == 0 and again.reused == 24 and not again.already_prepared
  assert len(open_prepared("merge:audio_balanced:40_30_30", data_dir)) == 24


def test_prepare_4qaed_and_folder(tmp_path):
  src = fx.make_fourqaed(str(tmp_path / "src"), per_quadrant=5, seconds=0.6)
  data_dir = tmp_path / "data"
  summary = prepare("4qaed", manual_dir=src, data_dir=data_dir, clip_seconds=0.5, workers=1,
                    progress=False)
  assert summary.counts == {"train": [3, 3, 3, 3], "validate": [1, 1, 1, 1],
                            "test": [1, 1, 1, 1]}
  ds = open_prepared("4qaed", data_dir)
  assert ds.clip_samples == 8000 and np.all(np.isnan(ds.arousal))
  assert ds.params == {"sample_rate": 16000, "clip_seconds": 0.5, "seed": 0}

  top = fx.make_folder(str(tmp_path / "mine_src"), per_quadrant=3, seconds=0.4)
  summary = prepare("folder:mine", manual_dir=top, data_dir=data_dir, clip_seconds=0.5,
                    workers=1, progress=False)
  ds = open_prepared("folder:mine", data_dir)
  assert len(ds) == 12 and ds.path.endswith(os.path.join("audio_folder", "mine", "1.0.0"))
  assert np.all(ds.durations < 0.45) and not np.any(ds[0]["waveform"][7000:])  # zero-padded


def test_dataset_names():
  assert parse_dataset("merge:audio_balanced").name == "merge:audio_balanced:70_15_15"
  assert parse_dataset("MERGE:Bimodal_Complete:40-30-30").name == "merge:bimodal_complete:40_30_30"
  assert parse_dataset("4qaed").name == "4qaed"
  assert parse_dataset("folder:my.set-1").config_name == "my.set-1"
  for bad, match in [("merge:lyrics_balanced", "lyrics only"), ("deam", "unknown dataset"),
                     ("folder:../x", "invalid folder dataset name"), ("merge", "unknown dataset")]:
    with pytest.raises(MerjaxError, match=match):
      parse_dataset(bad)


@pytest.mark.parametrize("dataset,command", [
    ("merge:audio_complete", "merjax prepare merge --subset audio_complete --manual-dir PATH"),
    ("merge:bimodal_balanced:40_30_30",
     "merjax prepare merge --subset bimodal_balanced --split 40_30_30 --manual-dir PATH"),
    ("4qaed", "merjax prepare 4qaed --manual-dir PATH"),
    ("folder:mine", "merjax prepare folder --path PATH --name mine"),
])
def test_missing_store_says_which_prepare_to_run(tmp_path, dataset, command):
  with pytest.raises(MerjaxError, match="not prepared") as error:
    open_prepared(dataset, tmp_path)
  assert command in str(error.value)


def test_default_data_dir(monkeypatch, tmp_path):
  from merjax.data.store import default_data_dir
  monkeypatch.setenv("MERJAX_DATA_DIR", str(tmp_path / "d"))
  assert default_data_dir() == str(tmp_path / "d")
  monkeypatch.delenv("MERJAX_DATA_DIR")
  assert default_data_dir() == os.path.expanduser("~/merjax_data")


def test_cli_prepare(tmp_path, capsys):
  from merjax.cli import main

  top = fx.make_folder(str(tmp_path / "src"), per_quadrant=3, seconds=0.3, with_splits=True)
  args = ["prepare", "folder", "--path", top, "--name", "cli", "--data-dir", str(tmp_path / "d"),
          "--clip-seconds", "0.25", "--workers", "1", "--no-progress"]
  assert main(args) == 0
  out = capsys.readouterr().out
  assert "folder:cli: prepared (12 clips decoded" in out
  assert "use it with --dataset folder:cli" in out
  assert main(["prepare", "merge", "--subset", "lyrics_complete", "--manual-dir", top]) == 2
  assert "lyrics only" in capsys.readouterr().err
