"""benchmarks/accelerator.py --quick (on CPU) and its wheel command (accelerator_wheels.py)."""

import base64
import hashlib
import importlib.util
import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = {"cnn_step", "waveform_step", "log_mel", "augment_log_mel", "fit_epoch"}


def _wheels_module():
  spec = importlib.util.spec_from_file_location("accelerator_wheels",
                                                ROOT / "benchmarks/accelerator_wheels.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _tiny_wheel(folder: Path) -> Path:
  """A minimal pure-Python wheel (module ``h4probe``), built without a registry."""
  files = {"h4probe.py": b"VALUE = 42\n",
           "h4probe-1.0.dist-info/METADATA": b"Metadata-Version: 2.1\nName: h4probe\n"
                                             b"Version: 1.0\n",
           "h4probe-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\n"
                                          b"Root-Is-Purelib: true\nTag: py3-none-any\n"}
  record = []
  for name, data in files.items():
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    record.append(f"{name},sha256={digest},{len(data)}")
  record.append("h4probe-1.0.dist-info/RECORD,,")
  path = folder / "h4probe-1.0-py3-none-any.whl"
  with zipfile.ZipFile(path, "w") as z:
    for name, data in files.items():
      z.writestr(name, data)
    z.writestr("h4probe-1.0.dist-info/RECORD", "\n".join(record) + "\n")
  return path


def test_wheels_install_from_the_folder_without_a_registry(tmp_path):
  wheels = _wheels_module()
  source, target = tmp_path / "whl", tmp_path / "site"
  source.mkdir()
  _tiny_wheel(source)
  wheels.install(str(source), str(target))
  out = subprocess.run([sys.executable, "-c", "import h4probe; print(h4probe.VALUE)"],
                       env=dict(os.environ, PYTHONPATH=str(target)), capture_output=True,
                       text=True, check=True)
  assert out.stdout.strip() == "42"
  assert "librosa==0.11.0" in wheels.WHEELS and "soxr==1.1.0" in wheels.WHEELS
  with pytest.raises(SystemExit, match="no wheels"):
    wheels.install(str(tmp_path / "empty"), str(target))


@pytest.mark.slow
def test_quick_run_through_the_wheel_command(tmp_path):
  """``accelerator_wheels.py run --quick --json`` from the source tree: every case, the HLO
  checks, fast == plain, a finite bfloat16 loss and the fit under the transfer guard."""
  source = tmp_path / "whl"
  source.mkdir()
  _tiny_wheel(source)
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "XLA_FLAGS")}
  env["JAX_PLATFORMS"] = "cpu"
  out = subprocess.run([sys.executable, str(ROOT / "benchmarks/accelerator_wheels.py"), "run",
                        "--wheels", str(source), "--target", str(tmp_path / "site"), "--quick",
                        "--json"], env=env, capture_output=True, text=True, timeout=900,
                       check=False)
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads(out.stdout.strip().splitlines()[-1])
  assert result["benchmark"] == "accelerator"
  rows = result["rows"]
  assert {r["case"] for r in rows} == CASES
  for r in rows:
    assert {"dtype", "impl", "batch", "devices", "unit", "ours"} <= r.keys()
    assert r["ours"] > 0
  steps = [r for r in rows if r["case"] == "cnn_step"]
  assert {(r["dtype"], r["impl"], r["prng"]) for r in steps} >= {
      ("float32", "fast", "threefry"), ("float32", "plain", "threefry"),
      ("bfloat16", "fast", "threefry"), ("bfloat16", "plain", "threefry"),
      ("float32", "fast", "unsafe_rbg"), ("float32", "plain", "unsafe_rbg")}
  for r in steps + [r for r in rows if r["case"] == "waveform_step"]:
    assert r["host_callbacks"] is False and r["donated"] is True
    assert r["gflops"] > 0 and r["gbytes"] > 0
  fast32 = next(r for r in steps if (r["dtype"], r["impl"], r["prng"])
                == ("float32", "fast", "threefry"))
  assert fast32["max_diff_logits"] < 1e-4 and fast32["max_diff_grads"] < 1e-4
  assert all(math.isfinite(r["loss"]) for r in steps if r["dtype"] == "bfloat16")
  fits = [r for r in rows if r["case"] == "fit_epoch"]
  assert {r["pipeline"] for r in fits} == {"waveforms", "precomputed"}
  assert all(r["epochs"] == 2 and r["transfer_guard"] == "disallow" for r in fits)
  for case in ("log_mel", "augment_log_mel"):  # CPU vs CPU here: the same numbers
    assert next(r for r in rows if r["case"] == case)["max_diff_db"] < 1e-3
