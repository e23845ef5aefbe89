"""The benchmarks' shared output: ratios, the printed table, JSON and the Markdown results."""

import importlib.util
import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _load_common():
  # Importing it applies merjax's XLA defaults to os.environ; keep this session's as they were.
  saved = os.environ.get("XLA_FLAGS")
  spec = importlib.util.spec_from_file_location("_common", ROOT / "benchmarks/_common.py")
  module = importlib.util.module_from_spec(spec)
  try:
    spec.loader.exec_module(module)
  finally:
    if saved is None:
      os.environ.pop("XLA_FLAGS", None)
    else:
      os.environ["XLA_FLAGS"] = saved
  return module


common = _load_common()


def test_ratio_says_how_many_times_better_ours_is():
  seconds = common.row("log_mel", unit="s/clip", ours=0.002, reference=0.01, reference_name="x")
  assert abs(seconds["ratio"] - 5.0) < 1e-12
  rate = common.row("train", unit="samples/s", ours=30.0, reference=20.0, reference_name="k",
                    higher_is_better=True)
  assert abs(rate["ratio"] - 1.5) < 1e-12
  assert common.row("x", unit="s", ours=1.0, reference=None, reference_name=None)["ratio"] is None


def test_table_json_and_markdown(tmp_path, capsys):
  rows = [common.row("log_mel", unit="s/clip", ours=0.002, reference=0.01, reference_name="lib",
                     batch=32, range=[1.0, 2.5])]
  path = tmp_path / "results" / "spectral.md"
  common.emit("spectral", rows, as_json=False, extra_columns=("batch", "range"),
              markdown=str(path))
  printed = capsys.readouterr().out.splitlines()
  assert printed[1].split() == ["case", "batch", "range", "unit", "ours", "reference",
                                "reference_name", "ratio"]
  assert printed[2].split()[:2] == ["log_mel", "32"] and printed[2].split()[-1] == "5"
  text = path.read_text()
  assert text.startswith("# spectral\n") and "python benchmarks/spectral.py --markdown" in text
  assert "| log_mel | 32 | [1, 2.5] | s/clip | 0.002 | 0.01 | lib | 5 |" in text
  common.emit("spectral", rows, as_json=True)
  payload = json.loads(capsys.readouterr().out)
  assert payload["benchmark"] == "spectral" and payload["rows"][0]["ratio"] == rows[0]["ratio"]
  assert payload["machine"]["cpu_count"] >= 1


def test_time_call_returns_the_best_of_its_repeats():
  calls = []
  best = common.time_call(lambda: calls.append(1), repeats=3, warmup=2)
  assert len(calls) == 5 and 0 <= best < 1.0


def test_batch_option_takes_positive_sizes_only(capsys):
  import pytest

  cli = common.parser("x", batches=(1, 8))
  assert cli.parse_args([]).batch == [1, 8]
  assert cli.parse_args(["--batch", "32", "64"]).batch == [32, 64]
  with pytest.raises(SystemExit):
    cli.parse_args(["--batch", "0"])
  assert "must be a positive integer, got 0" in capsys.readouterr().err
  assert not hasattr(common.parser("y").parse_args([]), "batch")


_PARENT_SCRIPT = r"""
import json, subprocess, sys
sys.path.insert(0, "benchmarks")
sys.argv = ["train.py", "--devices", "1", "4", "--json", "--no-keras"]
import train
commands = []

def fake_run(command, env, **kwargs):
  commands.append((command, env["XLA_FLAGS"]))
  devices = int(command[command.index("--worker-devices") + 1])
  child = {"machine": {"devices": "gpu:H100", "cpu_count": 16, "xla_flags": ""},
           "keras_name": None,
           "results": [{"case": "cnn_train", "impl": "fast", "devices": devices, "batch": 32,
                        "rates": [10.0 * devices]}]}
  return subprocess.CompletedProcess(command, 0, json.dumps(child) + "\n", "")

train.subprocess.run = fake_run
train.main()
from jax._src import xla_bridge
assert not xla_bridge._backends, "the parent started a JAX backend"
print(json.dumps(commands))
"""


def test_train_benchmark_measures_every_device_count_in_a_child_and_never_starts_jax():
  import subprocess
  import sys

  proc = subprocess.run([sys.executable, "-c", _PARENT_SCRIPT], cwd=ROOT, capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  report, commands = (json.loads(line) for line in proc.stdout.strip().splitlines()[-2:])
  assert [c[c.index("--worker-devices") + 1] for c, _ in commands] == ["1", "4"]
  assert [flags.split()[-1] for _, flags in commands] == [
      "--xla_force_host_platform_device_count=1", "--xla_force_host_platform_device_count=4"]
  assert all("--cnn-steps" not in c for c, _ in commands)  # the child picks 50 off CPU
  assert report["machine"]["devices"] == "gpu:H100"
  rows = {r["devices"]: r for r in report["rows"]}
  assert rows[4]["reference"] == 10.0 and rows[4]["ratio"] == 4.0
