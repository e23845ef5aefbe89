"""The catalogue of bad inputs and faults: each case's exact user-visible outcome.

Every case asserts the exit status, the one-line message naming the file or argument, and
that nothing else was lost (the other songs are still prepared, the other files still read).
Issue 12, "Nothing silently lost or mislabelled"; predict's warnings live with predict.
"""

import os
import shutil
import subprocess
import sys
import time
import zipfile

import _fixtures as fx
import numpy as np
import pytest

from merjax.cli import main
from merjax.errors import MerjaxError

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
CLIP = 1.0


def _one_line_error(capsys, command: str) -> str:
  """The single stderr line of a refused command (and nothing on stdout)."""
  captured = capsys.readouterr()
  lines = captured.err.strip().splitlines()
  assert len(lines) == 1, captured.err
  assert lines[0].startswith(f"merjax {command}: error: "), lines[0]
  return lines[0]


@pytest.fixture
def readonly_dir(tmp_path):
  """A folder nobody can write into, root included (immutable flag), or skip."""
  path = tmp_path / "readonly"
  path.mkdir()
  if os.geteuid() == 0:
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
      pytest.skip("running as root on a file system without chattr +i")
    yield path
    subprocess.run(["chattr", "-i", str(path)], check=True)
  else:
    path.chmod(0o555)
    yield path
    path.chmod(0o755)


# -- 1. one decoder, the same verdict with or without ffmpeg --------------------------------------

def _corrupt_mp3(folder) -> str:
  good = fx.write_clip(os.path.join(folder, "good.mp3"), seconds=1.5, sample_rate=44100,
                       channels=2)
  data = bytearray(open(good, "rb").read())
  start = len(data) // 4
  data[start:start + 2000] = np.random.default_rng(0).integers(0, 256, 2000,
                                                               dtype=np.uint8).tobytes()
  path = os.path.join(folder, "corrupt.mp3")
  with open(path, "wb") as f:
    f.write(bytes(data))
  return path


_DECODE_BOTH = """
import hashlib, sys
sys.path.insert(0, sys.argv[1])
from merjax.audio.io import decode
from merjax.errors import MerjaxError
for path in sys.argv[2:]:
  try:
    y, rate = decode(path)
    print(path, "ok", rate, y.shape[0], hashlib.sha1(y.tobytes()).hexdigest())
  except MerjaxError as error:
    print(path, "error", error)
"""


def test_decoding_does_not_depend_on_ffmpeg_on_path(tmp_path):
  """The same samples or the same error with ffmpeg on PATH and with it hidden."""
  corrupt = _corrupt_mp3(str(tmp_path))
  files = [corrupt, os.path.join(tmp_path, "good.mp3"),
           fx.write_clip(str(tmp_path / "b.wav"), seconds=0.7, sample_rate=48000, channels=1)]
  hidden = tmp_path / "bin"  # a PATH with python but without ffmpeg, whatever is installed
  hidden.mkdir()
  os.symlink(sys.executable, hidden / "python")
  outputs = []
  for path in (os.environ.get("PATH", ""), str(hidden)):
    result = subprocess.run([sys.executable, "-c", _DECODE_BOTH, ROOT, *files],
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PATH": path})
    assert result.returncode == 0, result.stderr[-2000:]
    outputs.append(result.stdout)
  assert outputs[0] == outputs[1]
  lines = outputs[0].splitlines()
  assert lines[0].startswith(f"{corrupt} error {corrupt}: cannot decode: the file is corrupt")
  assert " ok 44100 " in lines[1] and " ok 48000 " in lines[2]


def test_decoding_never_runs_a_program_or_audioread(tmp_path, monkeypatch):
  """No subprocess and no audioread backend is ever asked, so nothing installed can matter."""
  import builtins

  from merjax.audio.io import decode

  corrupt = _corrupt_mp3(str(tmp_path))
  good = os.path.join(tmp_path, "good.mp3")
  expected = decode(good)[0]

  def forbidden(*args, **kwargs):
    raise AssertionError(f"decode started a program: {args}")

  real_import = builtins.__import__

  def no_audioread(name, *args, **kwargs):
    if name == "audioread" or name.startswith("audioread."):
      raise AssertionError("decode imported audioread")
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(subprocess, "Popen", forbidden)
  monkeypatch.setattr(builtins, "__import__", no_audioread)
  np.testing.assert_array_equal(decode(good)[0], expected)
  with pytest.raises(MerjaxError, match=r"corrupt\.mp3: cannot decode.*libsndfile"):
    decode(corrupt)


# -- 2. a strict prepare names every problem at once ----------------------------------------------

@pytest.fixture(scope="module")
def merge_release(tmp_path_factory):
  return fx.make_merge(str(tmp_path_factory.mktemp("release")), seconds=1.2)


def _broken_copy(release, dest):
  """The release with one problem of each kind: missing, duplicated, unreadable, truncated."""
  top = fx.copy_tree(release, str(dest / "MERGE_Audio_Balanced"))
  os.remove(os.path.join(top, "Q1", "A001.mp3"))  # missing
  corrupt = os.path.join(top, "Q2", "A007.mp3")  # unreadable
  with open(corrupt, "r+b") as f:
    f.write(b"this is no mp3 frame" * 20)
  cut = os.path.join(top, "Q3", "A013.mp3")  # truncated
  data = open(cut, "rb").read()
  with open(cut, "wb") as f:
    f.write(data[:len(data) // 2])
  test_list = os.path.join(top, "tvt_dataframes", "tvt_70_15_15",
                           "tvt_70_15_15_test_audio_balanced.csv")
  fx.edit_csv(test_list, lambda header, rows: rows + [["A003", "Q1", "x"]])  # also in train
  return top


def test_strict_prepare_names_every_problem_at_once(merge_release, tmp_path, capsys):
  top = _broken_copy(merge_release, tmp_path)
  data_dir = str(tmp_path / "data")
  args = ["prepare", "merge", "--subset", "audio_balanced", "--manual-dir", top,
          "--data-dir", data_dir, "--clip-seconds", str(CLIP), "--workers", "1", "--no-progress"]
  assert main(args) == 2
  line = _one_line_error(capsys, "prepare")
  assert "4 problem(s) affecting 4 song(s)" in line
  assert "A001: missing audio" in line
  assert "A003: listed in both train and test" in line
  assert "A007: " in line and "A007.mp3: cannot decode" in line
  assert "A013: " in line and "A013.mp3: truncated file" in line
  assert "--on-error skip" in line

  # Skipping them keeps every other song, and the decoded clips were cached: nothing decoded twice.
  assert main(args + ["--on-error", "skip"]) == 0
  out = capsys.readouterr().out
  assert "(0 clips decoded, 20 reused from the cache)" in out
  assert "skipped 4 song(s)" in out
  from merjax.data.store import open_prepared
  ds = open_prepared("merge:audio_balanced", data_dir)
  assert len(ds) == 20 and {"A001", "A003", "A007", "A013"}.isdisjoint(ds.song_ids.tolist())


def test_store_records_its_decoder(merge_release, tmp_path, capsys):
  import soundfile

  from merjax.audio.io import decoder_info
  from merjax.data.store import open_prepared

  data_dir = str(tmp_path / "data")
  assert main(["prepare", "merge", "--subset", "audio_balanced", "--manual-dir", merge_release,
               "--data-dir", data_dir, "--clip-seconds", str(CLIP), "--workers", "1",
               "--no-progress"]) == 0
  assert f"decoded with libsndfile {soundfile.__libsndfile_version__}" in capsys.readouterr().out
  ds = open_prepared("merge:audio_balanced", data_dir)
  assert ds.decoder == decoder_info()
  assert ds.decoder["decoder"].startswith(f"libsndfile {soundfile.__libsndfile_version__} ")
  assert ds.decoder["resampler"].startswith("soxr ")
  assert "decoded with libsndfile" in ds.summary().format()


# -- 3. folder datasets: one recording under two labels, files outside Q1..Q4 ---------------------

def _prepare_folder(top, data_dir, *extra):
  return main(["prepare", "folder", "--path", str(top), "--name", "mine", "--data-dir",
               str(data_dir), "--clip-seconds", "0.25", "--workers", "1", "--no-progress",
               *extra])


def test_same_recording_in_two_quadrants_is_named(tmp_path, capsys):
  top = fx.make_folder(str(tmp_path / "src"), per_quadrant=3, seconds=0.3)
  original = os.path.join(top, "Q1", "clip00.wav")
  copy = os.path.join(top, "Q3", "copy.wav")
  shutil.copy(original, copy)
  assert _prepare_folder(top, tmp_path / "data") == 2
  line = _one_line_error(capsys, "prepare")
  assert "2 problem(s) affecting 2 song(s)" in line
  assert "Q1/clip00: same recording in two quadrants" in line  # (and splits, if drawn so)
  assert f": {original} (Q1, " in line and f"is identical to {copy} (Q3, " in line

  assert _prepare_folder(top, tmp_path / "data", "--on-error", "skip") == 0
  out = capsys.readouterr().out
  assert "skipped 2 song(s)" in out and "Q1/clip00: same recording" in out
  from merjax.data.store import open_prepared
  ds = open_prepared("folder:mine", tmp_path / "data")
  assert len(ds) == 11  # the 12 others kept, both copies left out


def test_same_recording_in_two_splits_is_named(tmp_path, capsys):
  top = fx.make_folder(str(tmp_path / "src"), per_quadrant=4, seconds=0.3, with_splits=True)
  original = os.path.join(top, "train", "Q2", "clip04.wav")
  leak = os.path.join(top, "test", "Q2", "leak.wav")
  shutil.copy(original, leak)
  assert _prepare_folder(top, tmp_path / "data") == 2
  line = _one_line_error(capsys, "prepare")
  assert f"same recording in two splits: {leak} (Q2, test) is identical to {original} " \
         f"(Q2, train)" in line


def test_audio_outside_quadrant_folders_is_reported(tmp_path, capsys):
  top = fx.make_folder(str(tmp_path / "src"), per_quadrant=3, seconds=0.3)
  fx.write_clip(os.path.join(top, "Q5", "odd.wav"), seconds=0.3, seed=7)
  fx.write_clip(os.path.join(top, "happy", "joy.wav"), seconds=0.3, seed=8)
  assert _prepare_folder(top, tmp_path / "data") == 0
  out = capsys.readouterr().out
  assert (f"note: ignored 2 audio file(s) in {top} outside Q1..Q4 folders (in Q5/, happy/)"
          in out)
  assert "      3      3      3      3      12" in out  # every quadrant file still prepared


# -- 5. output paths ---------------------------------------------------------------------------

@pytest.mark.parametrize("option", ["--out", "--workdir"])
def test_train_refuses_a_read_only_output_before_any_work(readonly_dir, tmp_path, capsys,
                                                          option):
  paths = {"--out": str(tmp_path / "model"), "--workdir": str(tmp_path / "work")}
  paths[option] = str(readonly_dir / "inside")
  start = time.monotonic()
  code = main(["train", "--dataset", "synthetic", "--clips-per-quadrant", "4", "--seconds", "3",
               "--workers", "1", "--out", paths["--out"], "--workdir", paths["--workdir"]])
  assert code == 2 and time.monotonic() - start < 10
  line = _one_line_error(capsys, "train")
  assert f"{option} {readonly_dir / 'inside'}: not writable (its folder {readonly_dir})" in line
  assert not os.path.exists(tmp_path / "model") and not os.path.exists(tmp_path / "work")


def test_prepare_refuses_a_read_only_data_dir(readonly_dir, tmp_path, capsys):
  top = fx.make_folder(str(tmp_path / "src"), per_quadrant=1, seconds=0.3)
  assert _prepare_folder(top, readonly_dir) == 2
  assert f"--data-dir {readonly_dir}: not writable" in _one_line_error(capsys, "prepare")


def test_an_output_under_a_file_is_refused(tmp_path, capsys):
  blocker = tmp_path / "file"
  blocker.write_text("x")
  code = main(["features", "--dataset", "synthetic", "--clips-per-quadrant", "1", "--seconds",
               "1", "--out", str(blocker / "f.npz")])
  assert code == 2
  line = _one_line_error(capsys, "features")
  assert f"--out {blocker / 'f.npz'}: not writable ({blocker} is a file, not a directory)" in line


def test_atomic_directory_leaves_nothing_half_written(tmp_path):
  from merjax.parallel.files import atomic_directory

  target = tmp_path / "model"
  with pytest.raises(KeyboardInterrupt):
    with atomic_directory(target) as partial:
      (partial / "cnn").mkdir()
      (partial / "config.json").write_text("{")
      raise KeyboardInterrupt  # a kill during the final save
  assert os.listdir(tmp_path) == []
  # What a SIGKILL leaves (its process is gone) is cleared by the next run.
  stale = tmp_path / ".model.partial-999999999-abc"
  (stale / "cnn").mkdir(parents=True)
  with atomic_directory(target) as partial:
    (partial / "config.json").write_text("{}")
  assert sorted(os.listdir(tmp_path)) == ["model"]
  assert (target / "config.json").read_text() == "{}"
  with pytest.raises(MerjaxError, match="exists and is not an empty directory"):
    with atomic_directory(target):
      pass


@pytest.mark.slow
def test_train_killed_during_the_final_save_reruns(tmp_path, capsys, monkeypatch):
  import merjax.inference.directory as directory

  out = tmp_path / "model"
  args = ["train", "--dataset", "synthetic", "--clips-per-quadrant", "4", "--seconds", "3",
          "--max-epochs", "1", "--augment", "none", "--workers", "1", "--out", str(out)]
  real_save = directory.save_model

  def killed(model, path, **kwargs):
    real_save(model, path, **kwargs)
    raise KeyboardInterrupt  # after the checkpoints, before the report: a half-written model

  monkeypatch.setattr(directory, "save_model", killed)
  assert main(args) == 130
  assert not out.exists() and os.listdir(tmp_path) == []
  monkeypatch.setattr(directory, "save_model", real_save)
  assert main(args) == 0
  assert (out / "config.json").exists() and (out / "test" / "metrics.json").exists()


# -- 6. arguments are checked before any work ------------------------------------------------------

@pytest.mark.parametrize("args,message", [
    (["train", "--dataset", "synthetic", "--devices", "0"], "--devices must be at least 1, got 0"),
    (["train", "--dataset", "synthetic", "--devices", "-2"],
     "--devices must be at least 1, got -2"),
    (["train", "--dataset", "synthetic", "--devices", "4096"],
     "--devices 4096: only "),
    (["train", "--dataset", "synthetic", "--seconds", "2"],
     "--seconds must be at least 3 so the CNN's four pooling blocks have input left, got 2"),
    (["train", "--dataset", "synthetic", "--clips-per-quadrant", "2"],
     "--clips-per-quadrant must be at least 4"),
    (["train", "--dataset", "synthetic", "--workers", "0"], "--workers must be at least 1, got 0"),
    (["train", "--dataset", "merge:audio_balanced"], "dataset 'merge:audio_balanced:70_15_15' "
     "has no store"),
    (["prepare", "folder", "--path", ".", "--name", "x", "--workers", "0"],
     "--workers must be at least 1, got 0"),
    (["prepare", "folder", "--path", ".", "--name", "x", "--clip-seconds", "0"],
     "--clip-seconds must be positive, got 0.0"),
    (["features", "--dataset", "synthetic", "--workers", "0"],
     "--workers must be at least 1, got 0"),
    (["predict", "a.mp3", "--model", "m", "--workers", "0"],
     "--workers must be at least 1, got 0"),
    (["evaluate", "--model", "m", "--dataset", "4qaed", "--workers", "-1"],
     "--workers must be at least 1, got -1"),
    (["tune", "--dataset", "folder:nothing", "--out", "x"],
     "dataset 'folder:nothing' has no store"),
    (["tune", "--dataset", "deam", "--out", "x"], "unknown dataset 'deam'"),
    (["tune", "--dataset", "synthetic", "--out", "x", "--num-cpus", "0"],
     "--num-cpus must be at least 1, got 0"),
])
def test_arguments_are_refused_before_any_work(tmp_path, capsys, monkeypatch, args, message):
  monkeypatch.chdir(tmp_path)
  out = ["--out", str(tmp_path / "o")] if args[0] == "train" else []
  start = time.monotonic()
  assert main([*args, *out, "--data-dir", str(tmp_path / "d")] if args[0] in (
      "train", "tune", "prepare") else [*args, *out]) == 2
  assert time.monotonic() - start < 10
  assert message in _one_line_error(capsys, args[0])
  assert sorted(os.listdir(tmp_path)) == []  # nothing computed, nothing written
  if "ray" in sys.modules:
    assert not sys.modules["ray"].is_initialized()


# -- 7. a damaged archive is named ------------------------------------------------------------

def test_a_truncated_merge_zip_is_named(merge_release, tmp_path, capsys):
  archive = fx.zip_folder(fx.copy_tree(merge_release, str(tmp_path / "MERGE_Audio_Balanced")))
  shutil.rmtree(tmp_path / "MERGE_Audio_Balanced")
  data = open(archive, "rb").read()
  with open(archive, "wb") as f:
    f.write(data[:len(data) // 2])
  assert not zipfile.is_zipfile(archive)
  for manual_dir in (archive, str(tmp_path)):  # the zip itself, or the folder holding it
    assert main(["prepare", "merge", "--subset", "audio_balanced", "--manual-dir", manual_dir,
                 "--data-dir", str(tmp_path / "data"), "--no-progress"]) == 2
    assert f"damaged zip archive: {archive}" in _one_line_error(capsys, "prepare")


def test_a_truncated_folder_zip_is_named(tmp_path, capsys):
  archive = fx.zip_folder(fx.make_folder(str(tmp_path / "src"), per_quadrant=1, seconds=0.3))
  data = open(archive, "rb").read()
  with open(archive, "wb") as f:
    f.write(data[:len(data) // 3])
  assert _prepare_folder(archive, tmp_path / "data") == 2
  assert _one_line_error(capsys, "prepare").endswith(f"damaged zip archive: {archive}")


# -- 8. feature tables: one odd cell is a missing value, named ------------------------------------

def test_a_non_numeric_cell_is_a_named_missing_value(tmp_path):
  from merjax.features import FeaturePreprocessor, read_feature_table

  path = tmp_path / "all_features.csv"
  path.write_text("Song,F0001,F0002,Title\n"
                  "A1,1.0,10.0,one\nA2,2.0,oops,two\nA3,3.0,30.0,three\nA4,4.0,40.0,four\n")
  with pytest.warns(UserWarning) as caught:
    table = read_feature_table(path, columns=None)
  messages = [str(w.message) for w in caught]
  assert any("1 non-numeric cell(s) read as missing values (imputed with the training split's "
             "median): row 3 column 'F0002' ('oops')" in m for m in messages), messages
  assert table.names == ["F0001", "F0002"]  # the column is kept
  np.testing.assert_array_equal(table.values[:, 0], [1, 2, 3, 4])
  assert np.isnan(table.values[1, 1]) and table.values[2, 1] == 30.0
  train = FeaturePreprocessor(correlation_threshold=None)
  transformed = train.fit_transform(table.values, table.names)
  assert np.all(np.isfinite(transformed))
  assert train.report["nonfinite"]["F0002"]["nan"] == 1


def test_a_text_column_is_left_out_by_name(tmp_path):
  from merjax.features import read_feature_table

  path = tmp_path / "t.csv"
  path.write_text("track,title,energy\nt1,Intro,0.5\nt2,Outro,0.25\n")
  with pytest.warns(UserWarning, match=r"left out text column\(s\) without any number title"):
    table = read_feature_table(path, id_column="track")
  assert table.names == ["energy"]
  with pytest.raises(MerjaxError, match=r"column 'title' holds no numbers \(e\.g\. 'Intro' in "
                                        r"row 2\)"):
    read_feature_table(path, id_column="track", columns=["title", "energy"])


# -- 10. the librosa paths merjax and its benchmarks call run without crashing ---------------------

_LIBROSA_PATHS = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
import librosa

def step(name):
  print("step", name, flush=True)

sr = 16000
t = np.arange(3 * sr) / sr
y = (0.4 * np.sin(2 * np.pi * 440.0 * t) * (1 + 0.3 * np.sin(2 * np.pi * 2 * t))
     + 0.02 * np.random.default_rng(0).standard_normal(t.size)).astype(np.float32)
step("estimate_tuning"); librosa.estimate_tuning(y=y, sr=sr)
step("estimate_tuning float64"); librosa.estimate_tuning(y=y.astype(np.float64), sr=sr)
step("chroma_stft"); librosa.feature.chroma_stft(y=y, sr=sr)
step("melspectrogram"); librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=sr))
step("mfcc and spectral features"); librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20)
librosa.feature.spectral_contrast(y=y, sr=sr); librosa.feature.zero_crossing_rate(y)
step("tempo"); librosa.feature.tempo(y=y, sr=sr)
step("pitch_shift"); librosa.effects.pitch_shift(y, sr=sr, n_steps=2, res_type="fft")
step("time_stretch"); librosa.effects.time_stretch(y, rate=1.2)
step("merjax builtin features")
from merjax.features import extract_features
values = extract_features(y[None], backend="builtin", workers=1, progress=False)
assert values.shape[0] == 1 and np.isfinite(values).mean() > 0.9, values.shape
print("all librosa paths ok", flush=True)
"""


def test_the_librosa_paths_run_without_crashing():
  """In a subprocess, so that a crash in numba-compiled code (SIGSEGV) fails this test only."""
  result = subprocess.run([sys.executable, "-c", _LIBROSA_PATHS, ROOT], capture_output=True,
                          text=True, timeout=600)
  steps = [line[5:] for line in result.stdout.splitlines() if line.startswith("step ")]
  assert result.returncode == 0, (
      f"librosa died in step {steps[-1] if steps else '(import)'!r} with exit status "
      f"{result.returncode} (negative: killed by that signal; -11 is SIGSEGV, e.g. numba and "
      f"numpy versions other than pyproject.toml's pins, or a numba cache in librosa's "
      f"__pycache__ written by racing processes: delete its *.nbi and *.nbc files)\n"
      f"{result.stderr[-3000:]}")
  assert "all librosa paths ok" in result.stdout


# -- 9. Ray's processes end with the driver, even after kill -9 ------------------------------------

_DRIVER_WITH_CHILDREN = """
import importlib.util, os, subprocess, sys, time
# the module alone, without the (slow to import) merjax.tune package
spec = importlib.util.spec_from_file_location(
    "reaper", os.path.join(sys.argv[1], "merjax", "tune", "reaper.py"))
reaper = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reaper)
with reaper.reaped():
  clean = {k: v for k, v in os.environ.items() if k != "MERJAX_RAY_SESSION"}
  # like Ray's agents: started below the driver, environment not inherited
  below = subprocess.Popen(["sh", "-c", "sleep 600 & sleep 600"], env=clean)
  time.sleep(2.5)  # the watchdog notes the processes below the driver once a second
  print(below.pid, flush=True)
  time.sleep(600)
"""


def _alive(pids):
  return [p for p in pids if os.path.exists(f"/proc/{p}")
          and open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"]


def _kill(driver, started, *, within: float) -> list[int]:
  """Kills the driver with SIGKILL; the processes of ``started`` still alive after ``within``
  seconds (then killed here, so that no test leaves any behind)."""
  import signal

  os.kill(driver.pid, signal.SIGKILL)
  driver.wait()
  deadline = time.monotonic() + within
  while _alive(started) and time.monotonic() < deadline:
    time.sleep(0.2)
  left = _alive(started)
  for pid in left:
    os.kill(pid, signal.SIGKILL)
  return left


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the watchdog reads /proc")
def test_processes_started_by_a_killed_driver_are_stopped():
  from merjax.tune.reaper import descendants

  driver = subprocess.Popen([sys.executable, "-c", _DRIVER_WITH_CHILDREN, ROOT],
                            stdout=subprocess.PIPE, text=True)
  started = []
  try:
    int(driver.stdout.readline())
    started = list(descendants(driver.pid))
    assert len(started) >= 4  # watchdog, sh, two sleeps
  finally:
    left = _kill(driver, started, within=15)
  assert left == []


_RAY_DRIVER = """
import sys, time
sys.path.insert(0, sys.argv[1])
from merjax.tune.session import ray_session
with ray_session(num_cpus=1):
  print("ready", flush=True)
  time.sleep(600)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the watchdog reads /proc")
def test_ray_agents_end_with_a_killed_driver():
  pytest.importorskip("ray")
  from merjax.tune.reaper import descendants

  driver = subprocess.Popen([sys.executable, "-c", _RAY_DRIVER, ROOT], stdout=subprocess.PIPE,
                            text=True)
  started = []
  try:
    assert driver.stdout.readline().strip() == "ready"
    time.sleep(3)
    started = list(descendants(driver.pid))
    titles = [open(f"/proc/{p}/cmdline", "rb").read() for p in _alive(started)]
    assert any(t.startswith(b"ray::DashboardAgent") for t in titles), titles
  finally:
    left = _kill(driver, started, within=20)
  assert left == []
