"""`merjax demo` end to end on a small synthetic set, and its bad-input handling."""

import json
import subprocess
import sys

import pytest

from merjax.cli import main


@pytest.mark.parametrize("args,message", [
    (["--clips-per-quadrant", "0"], "--clips-per-quadrant must be at least 4"),
    (["--seconds", "-1"], "--seconds must be positive"),
])
def test_demo_rejects_impossible_arguments_in_one_line(tmp_path, capsys, args, message):
  code = main(["demo", "--out", str(tmp_path / "out"), *args])
  err = capsys.readouterr().err
  assert code == 2
  assert message in err and len(err.strip().splitlines()) == 1
  assert not (tmp_path / "out").exists()


def test_demo_output_path_that_is_a_file_fails_without_traceback(tmp_path):
  target = tmp_path / "taken"
  target.write_text("not a directory")
  proc = subprocess.run([sys.executable, "-m", "merjax.cli", "demo", "--out", str(target)],
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 2
  assert "Traceback" not in proc.stderr
  assert f"--out {target} exists and is not a directory" in proc.stderr
  assert target.read_text() == "not a directory"


@pytest.mark.slow
def test_small_demo_runs_end_to_end(tmp_path, capsys):
  out = tmp_path / "demo"
  code = main(["demo", "--out", str(out), "--clips-per-quadrant", "8", "--seconds", "3",
               "--max-epochs", "3", "--seed", "1"])
  assert code == 0
  metrics = json.loads((out / "metrics.json").read_text())
  assert set(metrics) == {"cnn", "dnn", "hybrid"}
  for name in ("cnn", "dnn", "hybrid"):
    m = metrics[name]
    assert {"f1", "precision", "recall", "accuracy", "confusion_matrix"} <= set(m)
    assert 0.0 <= m["f1"] <= 1.0 and m["n"] == metrics["hybrid"]["n"] >= 4
    assert len(m["confusion_matrix"]) == 4
  for name in ("metrics.md", "confusion.png", "history.png", "history.json"):
    assert (out / name).stat().st_size > 0
  printed = capsys.readouterr().out
  assert "[cnn] epoch   1/3" in printed and "[fusion] stopped" in printed
  assert "| hybrid |" in printed


# `merjax demo --seed 0` with its defaults (100 clips per quadrant of 3 s, Table 2's Bimodal
# Balanced preset; each stage seeded by merjax.config.derive_seed): test weighted F1 of the CNN,
# the DNN and the hybrid, as measured.
DEMO_SEED0_F1 = {"cnn": 0.8360, "dnn": 0.7985, "hybrid": 0.8346}


@pytest.fixture(scope="module")
def default_demo(tmp_path_factory):
  from merjax.runs.demo import run_demo
  return run_demo(out_dir=tmp_path_factory.mktemp("demo") / "demo", seed=0, log=lambda line: None)


@pytest.mark.slow  # the default demo: about 2 minutes of CPU time
def test_default_demo_metrics_for_seed_0_are_pinned(default_demo):
  for name, f1 in DEMO_SEED0_F1.items():
    assert default_demo[name]["f1"] == pytest.approx(f1, abs=0.04), name  # about two test clips


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="since the stages draw from their own seeds (derive_seed), "
                   "seed 0's hybrid ties the CNN (50 of 60 test clips each) instead of beating it")
def test_default_demo_hybrid_beats_both_branches(default_demo):
  assert default_demo["hybrid"]["f1"] > max(default_demo["cnn"]["f1"], default_demo["dnn"]["f1"])
