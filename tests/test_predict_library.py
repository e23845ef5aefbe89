"""`merjax predict` on a music library: inputs, windows, streaming, resuming (issue 15), and the
warnings of predict (silence, NaN features, padding; issue 12 item 4).

The model is a tiny untrained hybrid (random weights, real fitted normalisation and feature
preprocessing) with 3 s clips: predictions are arbitrary but deterministic, which is all these
tests need.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from _fixtures import write_clip

from merjax.cli import main

CLIP = 3.0
SR = 16000
# name -> (seconds, native rate, channels); several lengths and every format libsndfile writes.
SONGS = {"a_short.wav": (1.5, 44100, 2), "b_exact.flac": (3.0, 48000, 1),
         "c_mid.ogg": (7.0, 22050, 2), "d_long.flac": (20.0, 44100, 2),
         "sub/e_song.mp3": (9.0, 44100, 1), "sub/f_song.wav": (12.5, 16000, 1),
         "sub/deeper/g_song.ogg": (5.0, 44100, 1)}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  from merjax.config import paper_config
  from merjax.data.synthetic import generate
  from merjax.inference.artefact import HybridModel
  from merjax.inference.directory import save_model

  config = paper_config("merge_audio_balanced")
  config = config.replace(audio=config.audio.replace(clip_seconds=CLIP),
                          model=config.model.replace(conv_filters=8, cnn_embedding=32,
                                                     dnn_hidden=(32, 16), fusion_hidden=(16,)))
  clips = generate(clips_per_quadrant=1, seconds=CLIP, seed=1).waveforms
  model = HybridModel.initialise(config, waveforms=clips)
  return save_model(model, tmp_path_factory.mktemp("predict") / "model")


@pytest.fixture(scope="module")
def library(tmp_path_factory):
  root = tmp_path_factory.mktemp("library") / "music"
  for i, (name, (seconds, rate, channels)) in enumerate(SONGS.items()):
    write_clip(str(root / name), seconds=seconds, sample_rate=rate, channels=channels, seed=i)
  (root / "sub" / "broken.flac").write_bytes(b"fLaC but nothing a decoder can read")
  (root / "notes.txt").write_text("not audio, not listed\n")
  return root


def _lines(path):
  return [json.loads(line) for line in path.read_text().splitlines()]


def _expected_paths(root):
  return [str(root / p) for p in ("a_short.wav", "b_exact.flac", "c_mid.ogg", "d_long.flac",
                                  "sub/broken.flac", "sub/e_song.mp3", "sub/f_song.wav",
                                  "sub/deeper/g_song.ogg")]


# --- issue 15: inputs, windows, streaming, resuming ---------------------------------------------

def test_window_starts_follow_the_documented_policies():
  from merjax.inference.songs import window_starts
  s = 100  # samples per second, clip 30 s, hop 30 s, cap 10: the defaults at a toy rate
  policy = dict(clip_samples=30 * s, hop_samples=30 * s, max_windows=10)
  assert window_starts(n_samples=240 * s, segment="windows", **policy) == [
      k * 30 * s for k in range(8)]  # exact hops, the last window ends at the song's end
  # 250 s: 9 windows spread from 0 to 220 s (27.5 s apart, never more than the hop)
  assert window_starts(n_samples=250 * s, segment="windows", **policy) == [
      int(round(k * 27.5 * s)) for k in range(9)]
  long = window_starts(n_samples=600 * s, segment="windows", **policy)  # capped: 10 over it all
  assert len(long) == 10 and long[0] == 0 and long[-1] == 570 * s
  assert window_starts(n_samples=50 * s, segment="windows", **policy) == [0, 20 * s]
  assert window_starts(n_samples=20 * s, segment="windows", **policy) == [0]  # short: padded
  assert window_starts(n_samples=240 * s, segment="first", **policy) == [0]
  assert window_starts(n_samples=240 * s, segment="middle", **policy) == [105 * s]


@pytest.mark.parametrize("segment", ["first", "middle", "windows"])
def test_segment_choices_give_the_documented_windows(model_dir, library, segment):
  from merjax.inference.directory import load_model
  from merjax.inference.predict import collect_paths, predict_songs
  from merjax.inference.songs import window_starts

  model = load_model(model_dir)
  predictions = list(predict_songs(collect_paths([library]), model=model, which="cnn",
                                   segment=segment, hop_seconds=2.0, max_windows=4,
                                   per_window=True))
  assert [p.path for p in predictions] == _expected_paths(library)
  for p in predictions:
    if p.path.endswith("broken.flac"):
      assert p.quadrant is None and "broken.flac" in p.error
      continue
    seconds = SONGS[os.path.relpath(p.path, library)][0]
    assert p.duration_seconds == pytest.approx(seconds, abs=0.1)  # MP3 frames round it up
    expected = window_starts(n_samples=int(round(p.duration_seconds * SR)),
                             clip_samples=int(CLIP * SR),
                             segment=segment, hop_samples=2 * SR, max_windows=4)
    assert p.window_starts == [round(s / SR, 3) for s in expected]
    assert len(p.window_probabilities) == len(expected)
    mean = np.mean(p.window_probabilities, axis=0)
    np.testing.assert_allclose([p.probabilities[q] for q in ("Q1", "Q2", "Q3", "Q4")], mean,
                               rtol=1e-6)
    assert p.quadrant == "Q" + str(int(np.argmax(mean)) + 1)
    assert p.padded == (seconds < CLIP)
  if segment == "windows":  # 20 s, hop 2 s, cap 4: four windows spread over the whole song
    long = next(p for p in predictions if p.path.endswith("d_long.flac"))
    assert long.window_starts == [0.0, 5.667, 11.333, 17.0]


def test_seeking_decodes_the_same_samples_as_a_full_decode(library):
  from merjax.audio.io import decode
  from merjax.inference.songs import read_windows

  for name in ("d_long.flac", "sub/f_song.wav"):
    full, _ = decode(str(library / name), sample_rate=SR)
    song = read_windows(str(library / name), sample_rate=SR, clip_samples=int(CLIP * SR),
                        segment="middle", hop_samples=SR)
    start = song.starts[0]
    assert start > 0
    np.testing.assert_allclose(song.windows[0], full[start:start + int(CLIP * SR)], atol=1e-6)


def test_to_mono_is_bit_identical_to_librosa():
  import librosa

  from merjax.audio.io import to_mono

  rng = np.random.default_rng(0)
  for channels in (1, 2, 3, 6):
    scale = rng.choice([1e-40, 1e-3, 1.0, 1e3], size=(50_000, channels))  # subnormals too
    frames = (rng.standard_normal((50_000, channels)) * scale).astype(np.float32)
    frames[::7] = 0.0
    frames[::11] = -0.0
    interleaved = frames.T  # how soundfile's (frames, channels) reads reach it
    ours, reference = to_mono(interleaved), librosa.to_mono(interleaved)
    assert ours.dtype == reference.dtype == np.float32
    np.testing.assert_array_equal(ours.view(np.int32), reference.view(np.int32))


def test_streamed_decode_is_bit_identical_to_librosa_load(library):
  """Blocks of 2**18 native frames, averaged and resampled as a stream: the same samples as
  ``librosa.load`` resampling the whole song at once."""
  import warnings

  import librosa

  from merjax.audio import io

  for name in ("d_long.flac", "c_mid.ogg"):  # 20 s at 44.1 kHz: four blocks; one block
    path = str(library / name)
    with warnings.catch_warnings():
      warnings.simplefilter("ignore")
      reference = librosa.load(path, sr=SR)[0]
    ours, _ = io.decode(path, sample_rate=SR)
    np.testing.assert_array_equal(ours, reference)
  assert SONGS["d_long.flac"][0] * SONGS["d_long.flac"][1] > 3 * io._BLOCK_FRAMES


def test_batch_size_changes_speed_not_predictions(model_dir, library):
  from merjax.inference.directory import load_model
  from merjax.inference.predict import collect_paths, default_batch_size, predict_songs

  assert default_batch_size() == 1  # tests run on XLA:CPU
  model = load_model(model_dir)
  paths = collect_paths([library])
  runs = [list(predict_songs(paths, model=model, which="hybrid", hop_seconds=2.0,
                             max_windows=4, per_window=True, batch_size=b)) for b in (None, 5)]
  assert [p.window_starts for p in runs[0]] == [p.window_starts for p in runs[1]]
  for one, five in zip(*runs):
    assert (one.error is None) == (five.error is None)
    if one.error is None:
      np.testing.assert_allclose(one.window_probabilities, five.window_probabilities,
                                 atol=1e-5)


def test_list_files_and_duplicates(library, tmp_path):
  from merjax.inference.predict import collect_paths

  listing = library / "sub" / "list.m3u"
  listing.write_text("# my songs\ne_song.mp3\n\n../c_mid.ogg\ne_song.mp3\n")
  paths = collect_paths([listing, library / "c_mid.ogg", library / "sub" / "deeper"])
  assert [os.path.abspath(p) for p in paths] == [
      str(library / "sub" / "e_song.mp3"), str(library / "c_mid.ogg"),
      str(library / "sub" / "deeper" / "g_song.ogg")]
  listing.unlink()


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(model_dir, library, tmp_path):
  complete = tmp_path / "complete.jsonl"
  args = ["predict", str(library), "--model", str(model_dir), "--which", "hybrid",
          "--hop", "1", "--batch-size", "2", "--no-progress"]
  assert main(args + ["--out", str(complete), "--workers", "1"]) == 1  # the broken file
  reference = _lines(complete)
  assert [r["path"] for r in reference] == _expected_paths(library)

  resumed = tmp_path / "resumed.jsonl"
  env = dict(os.environ, PYTHONPATH=os.pathsep.join(
      [os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
       os.environ.get("PYTHONPATH", "")]))
  process = subprocess.Popen([sys.executable, "-m", "merjax.cli", *args, "--out", str(resumed),
                              "--workers", "2"], env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
  deadline = time.monotonic() + 300
  while time.monotonic() < deadline and process.poll() is None:
    if resumed.exists() and resumed.read_text().count("\n") >= 2:
      break
    time.sleep(0.02)
  process.send_signal(signal.SIGKILL)
  process.wait()
  written = resumed.read_text().count("\n")
  assert 2 <= written < len(reference), "the run was not interrupted mid-way"
  with open(resumed, "a") as f:
    f.write('{"path": "half a line of a killed wri')  # as if killed while writing
  assert main(args + ["--out", str(resumed), "--workers", "1"]) == 1
  again = _lines(resumed)
  assert [r["path"] for r in again] == [r["path"] for r in reference]  # once each, same order
  for got, want in zip(again, reference):
    assert got["error"] == want["error"] and got["window_starts"] == want["window_starts"]
    if want["error"] is None:
      np.testing.assert_allclose(list(got["probabilities"].values()),
                                 list(want["probabilities"].values()), atol=1e-5)
  # a third run finds everything done and appends nothing
  assert main(args + ["--out", str(resumed), "--workers", "1"]) == 0
  assert resumed.read_text().count("\n") == len(reference)


def test_csv_output_resumes_and_refuses_other_settings(model_dir, library, tmp_path, capsys):
  out = tmp_path / "results.csv"
  base = ["predict", "--model", str(model_dir), "--which", "cnn", "--no-progress", "--workers",
          "1", "--out", str(out)]
  assert main(base + [str(library / "c_mid.ogg")]) == 0
  assert main(base + [str(library / "sub"), str(library / "c_mid.ogg")]) == 1
  import csv
  rows = list(csv.DictReader(out.open()))
  assert [r["path"] for r in rows] == [str(library / "c_mid.ogg")] + _expected_paths(library)[4:]
  assert all(r["which"] == "cnn" and r["segment"] == "windows" for r in rows)
  broken = next(r for r in rows if r["path"].endswith("broken.flac"))
  assert broken["quadrant"] == "" and "broken.flac" in broken["error"]
  assert "already in" in capsys.readouterr().err
  assert main(["predict", str(library / "c_mid.ogg"), "--model", str(model_dir), "--which",
               "dnn", "--out", str(out), "--no-progress"]) == 2
  assert "holds predictions made with --which cnn" in capsys.readouterr().err
  from merjax.errors import MerjaxError
  from merjax.inference.predict import ResultsFile
  writing = ResultsFile(out, which="cnn", segment="windows")  # a run in progress
  try:
    with pytest.raises(MerjaxError, match="being written by another merjax predict"):
      ResultsFile(out, which="cnn", segment="windows")
  finally:
    writing.close()
  header = out.read_text().splitlines()[0]
  assert out.read_text().count(header) == 1  # reopening never writes a second header


def test_broken_file_is_reported_and_the_rest_predicted(model_dir, library, capsys):
  code = main(["predict", str(library / "sub"), "--model", str(model_dir), "--json",
               "--no-progress", "--workers", "2", "--segment", "first"])
  captured = capsys.readouterr()
  assert code == 1
  records = [json.loads(line) for line in captured.out.splitlines()]
  assert [r["path"] for r in records] == _expected_paths(library)[4:]
  assert records[0]["quadrant"] is None and "broken.flac" in records[0]["error"]
  for r in records[1:]:
    assert r["error"] is None and r["quadrant"] in {"Q1", "Q2", "Q3", "Q4"}
    assert abs(sum(r["probabilities"].values()) - 1.0) < 1e-5
  assert "1 of 4 song(s) could not be decoded" in captured.err


def test_bad_arguments_fail_with_one_line(model_dir, library, tmp_path, capsys):
  for extra, message in ((["--out", str(tmp_path / "r.txt")], "--out must end in .jsonl"),
                         (["--hop", "0"], "--hop must be positive"),
                         (["--workers", "0"], "--workers must be at least 1"),
                         (["--out", str(tmp_path / "no" / "r.csv")], "does not exist")):
    assert main(["predict", str(library), "--model", str(model_dir), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


# --- issue 12 item 4: silence, NaN features and padding are reported ----------------------------

@pytest.fixture(scope="module")
def quiet_songs(tmp_path_factory):
  root = tmp_path_factory.mktemp("quiet")
  rng = np.random.default_rng(0)
  sf.write(root / "silence.wav", np.zeros(4 * SR, np.float32), SR)
  sf.write(root / "whisper.wav", (1e-5 * rng.standard_normal(4 * SR)).astype(np.float32), SR,
           subtype="FLOAT")
  write_clip(str(root / "music.wav"), seconds=4.0, sample_rate=SR, channels=1, seed=3)
  write_clip(str(root / "short.wav"), seconds=1.0, sample_rate=SR, channels=1, seed=4)
  return root


def test_silent_and_near_silent_input_get_a_warning(model_dir, quiet_songs, capsys):
  code = main(["predict", str(quiet_songs), "--model", str(model_dir), "--json",
               "--no-progress", "--workers", "1"])
  assert code == 0
  records = {os.path.basename(r["path"]): r
             for r in map(json.loads, capsys.readouterr().out.splitlines())}
  assert records["silence.wav"]["warning"].startswith("silent input")
  assert records["whisper.wav"]["warning"].startswith("near-silent input (RMS -100 dBFS")
  assert records["music.wav"]["warning"] is None or "silent" not in records["music.wav"]["warning"]
  # text output carries the same warning on the song's line
  main(["predict", str(quiet_songs / "silence.wav"), "--model", str(model_dir), "--which",
        "cnn", "--no-progress", "--workers", "1"])
  line = capsys.readouterr().out.strip()
  assert line.startswith(str(quiet_songs / "silence.wav") + ": Q") and "warning: silent" in line


def test_nan_features_are_reported_not_silently_imputed(model_dir, quiet_songs, capsys):
  from merjax.features import extract_features, feature_names

  names = feature_names()
  nan = [names[j] for j in np.flatnonzero(np.isnan(extract_features(np.zeros((1, 3 * SR),
                                                                             np.float32))[0]))]
  assert nan, "silence should give some NaN features with the builtin backend"
  main(["predict", str(quiet_songs / "silence.wav"), "--model", str(model_dir), "--json",
        "--which", "dnn", "--no-progress", "--workers", "1"])
  record = json.loads(capsys.readouterr().out)
  assert record["nan_features"] == nan
  assert f"{len(nan)} feature(s) came out NaN" in record["warning"] and nan[0] in record["warning"]
  assert record["quadrant"] is not None  # still predicted, with the training medians


def test_clips_shorter_than_the_model_clip_are_marked_padded(model_dir, quiet_songs, capsys):
  main(["predict", str(quiet_songs / "short.wav"), str(quiet_songs / "music.wav"), "--model",
        str(model_dir), "--which", "cnn", "--no-progress", "--workers", "1"])
  short, music = capsys.readouterr().out.strip().splitlines()
  assert "[padded]" in short and "[padded]" not in music
  main(["predict", str(quiet_songs / "short.wav"), "--model", str(model_dir), "--which", "cnn",
        "--json", "--no-progress", "--workers", "1"])
  record = json.loads(capsys.readouterr().out)
  assert record["padded"] is True and record["duration_seconds"] == 1.0
  assert record["window_starts"] == [0.0]


# --- the inference module ------------------------------------------------------------------------

def test_forward_compiles_once_for_models_of_the_same_shapes(model_dir):
  import jax

  from merjax.inference.artefact import forward
  from merjax.inference.directory import load_model

  model = load_model(model_dir)
  rng = np.random.default_rng(0)
  mels = rng.normal(size=(3, 128, model.config.audio.frames)).astype(np.float32)
  features = rng.normal(size=(3, len(model.feature_preprocessor.output_names))).astype(np.float32)
  first = model.logits(mels=mels, features=features, which="hybrid", batch_size=2)
  compiled = forward._cache_size()
  other = load_model(model_dir)
  other.fusion = jax.tree.map(lambda v: v * 2, other.fusion)  # other weights, same shapes
  second = other.logits(mels=mels, features=features, which="hybrid", batch_size=2)
  assert forward._cache_size() == compiled  # the weights are arguments, not constants
  assert not np.allclose(first, second)
  np.testing.assert_array_equal(first, model.logits(mels=mels, features=features, batch_size=2))


def _read_or_crash(path):
  """A stand-in decoder that kills its worker process on files named ``crash*``."""
  from merjax.inference.songs import SongWindows
  if os.path.basename(path).startswith("crash"):
    os._exit(1)
  return SongWindows(path=path, duration_seconds=1.0)


def test_a_file_that_kills_its_decoder_fails_alone():
  from merjax.inference.predict import _decoded

  paths = [f"/nowhere/song{i}.wav" for i in range(3)] + ["/nowhere/crash.wav"] + [
      f"/nowhere/song{i}.wav" for i in range(3, 9)]
  songs = list(_decoded(paths, _read_or_crash, workers=2))
  assert [s.path for s in songs] == paths  # in order, each once
  assert [s.error is not None for s in songs] == [p.endswith("crash.wav") for p in paths]
  assert "the decoder crashed on this file" in songs[3].error
