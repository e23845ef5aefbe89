"""`merjax train` / `predict` / `evaluate` through the CLI, and the model directory."""

import json

import numpy as np
import pytest
import soundfile as sf

from merjax.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
  out = tmp_path_factory.mktemp("runs") / "model"
  code = main(["train", "--dataset", "synthetic", "--clips-per-quadrant", "6", "--seconds", "3",
               "--max-epochs", "2", "--augment", "offline", "--out", str(out), "--workers", "1"])
  assert code == 0
  return out


@pytest.mark.slow
def test_model_directory_roundtrip_gives_identical_logits(model_dir):
  from merjax.data.synthetic import generate
  from merjax.inference.directory import load_model
  from merjax.inputs.prepare import model_inputs

  model = load_model(model_dir)
  assert model.config.audio.clip_seconds == 3.0 and model.config.augment.mode == "offline"
  training = json.loads((model_dir / "training.json").read_text())
  assert set(training["stages"]) == {"cnn", "dnn", "fusion"}
  assert json.loads((model_dir / "test" / "metrics.json").read_text()).keys() == {
      "cnn", "dnn", "hybrid"}
  clips = generate(clips_per_quadrant=1, seconds=3.0, seed=5).waveforms
  mels, features = model_inputs(model, clips, workers=1, progress=False)
  again = load_model(model_dir)
  np.testing.assert_array_equal(model.logits(mels=mels, features=features),
                                again.logits(mels=mels, features=features))


@pytest.mark.slow
def test_predict_reports_bad_files_and_still_predicts_the_rest(model_dir, tmp_path, capsys):
  from merjax.data.synthetic import generate
  clips = generate(clips_per_quadrant=1, seconds=4.0, seed=9).waveforms
  good = []
  for i, clip in enumerate(clips[:2]):
    path = tmp_path / f"clip{i}.wav"
    sf.write(path, clip, 16000)
    good.append(path)
  broken = tmp_path / "broken.mp3"
  broken.write_bytes(b"ID3 definitely not audio")
  code = main(["predict", str(good[0]), str(broken), str(good[1]), "--model", str(model_dir),
               "--json", "--workers", "1", "--no-progress"])
  captured = capsys.readouterr()
  assert code == 1
  results = [json.loads(line) for line in captured.out.splitlines()]  # JSON Lines
  assert [r["path"] for r in results] == [str(good[0]), str(broken), str(good[1])]
  for r in (results[0], results[2]):
    assert r["quadrant"] in {"Q1", "Q2", "Q3", "Q4"} and r["error"] is None
    assert abs(sum(r["probabilities"].values()) - 1.0) < 1e-5
  assert results[1]["quadrant"] is None and "broken.mp3" in results[1]["error"]
  assert "1 of 3 song(s) could not be decoded" in captured.err


def test_train_refuses_a_non_empty_output(tmp_path, capsys):
  (tmp_path / "keep.txt").write_text("x")
  code = main(["train", "--dataset", "synthetic", "--out", str(tmp_path)])
  assert code == 2
  assert "exists and is not an empty directory" in capsys.readouterr().err


@pytest.mark.slow
def test_prepare_folder_then_evaluate_the_saved_model(model_dir, tmp_path, capsys):
  from merjax.data.synthetic import generate
  data = generate(clips_per_quadrant=4, seconds=3.0, seed=11)
  root = tmp_path / "clips"
  for i, (clip, label) in enumerate(zip(data.waveforms, data.labels)):
    folder = root / f"Q{label + 1}"
    folder.mkdir(parents=True, exist_ok=True)
    sf.write(folder / f"song{i:02d}.wav", clip, 16000)
  store = tmp_path / "store"
  assert main(["prepare", "folder", "--path", str(root), "--name", "tiny", "--data-dir",
               str(store), "--workers", "1", "--clip-seconds", "3", "--no-progress"]) == 0
  report = tmp_path / "report"
  assert main(["evaluate", "--model", str(model_dir), "--dataset", "folder:tiny", "--data-dir",
               str(store), "--out", str(report)]) == 0
  metrics = json.loads((report / "metrics.json").read_text())
  n_test = metrics["hybrid"]["n"]
  assert n_test == sum(sum(row) for row in metrics["hybrid"]["counts"]) >= 4
  assert "| hybrid |" in capsys.readouterr().out
  # training on the prepared store streams the clips through the grain pipeline
  trained = tmp_path / "from_store"
  assert main(["train", "--dataset", "folder:tiny", "--data-dir", str(store), "--seconds", "3",
               "--max-epochs", "1", "--augment", "none", "--workers", "1",
               "--out", str(trained)]) == 0
  out = capsys.readouterr().out
  assert "through the grain pipeline" in out and "splits: train 8, validate 4, test 4" in out
  assert json.loads((trained / "test" / "metrics.json").read_text())["hybrid"]["n"] == n_test
  # ... and fills the per-song feature cache that `merjax features` shares
  cached = [p for p in (store / "features").rglob("*") if p.is_file()]
  assert len(cached) >= 16
