"""`merjax train` end to end in two real processes on 127.0.0.1 against one process.

Two processes with 2 CPU devices each form one 4-device run; the reference is one process with
4 devices. Both must write one model directory, only process 0 the files that are not
checkpoints, and their models must predict the same probabilities.
"""

import json
import os
import subprocess
import sys

import _parallel_worker as worker
import numpy as np
import pytest
from _fixtures import write_clip

TRAIN = ["train", "--dataset", "synthetic", "--clips-per-quadrant", "6", "--seconds", "3",
         "--max-epochs", "2", "--augment", "none", "--batch-size", "8", "--workers", "1"]


def _merjax(*args: str, devices: int) -> subprocess.Popen:
  env = dict(os.environ, PYTHONPATH=worker.REPO, JAX_PLATFORMS="cpu",
             XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
             MERJAX_XLA_DEFAULTS="0")
  return subprocess.Popen([sys.executable, "-m", "merjax.cli", *args], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _assert_same_variables(a, b) -> None:
  import jax

  from merjax.inference.directory import load_model
  first, second = load_model(a), load_model(b)
  for stage in ("cnn", "dnn", "fusion"):
    for x, y in zip(jax.tree.leaves(getattr(first, stage)),
                    jax.tree.leaves(getattr(second, stage)), strict=True):
      np.testing.assert_array_equal(x, y, err_msg=stage)


def _predict(model_dir, files) -> dict:
  proc = _merjax("predict", *map(str, files), "--model", str(model_dir), "--json", devices=1)
  code, output = worker.finish(proc, timeout=300)
  assert code == 0, output[-3000:]
  songs = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
  return {song["path"]: song["probabilities"] for song in songs}


@pytest.mark.slow
def test_two_process_train_writes_one_model_that_predicts_like_one_process(tmp_path):
  coordinator = f"127.0.0.1:{worker.free_port()}"
  shared = tmp_path / "two"
  work = ["--workdir", str(tmp_path / "work")]
  outputs = worker.finish_all(
      [_merjax(*TRAIN, *work, "--out", str(shared), "--coordinator", coordinator,
               "--num-processes", "2", "--process-id", str(i), devices=2) for i in range(2)],
      timeout=600)
  # Process 0 reports; process 1 trains in silence.
  assert "model written to" in outputs[0] and "model written to" not in outputs[1]
  # Both processes wrote the per-epoch checkpoints into one work dir: a rerun returns each
  # stage's run from it, and saves a model with the same variables bit for bit.
  again = tmp_path / "again"
  coordinator = f"127.0.0.1:{worker.free_port()}"
  outputs = worker.finish_all(
      [_merjax(*TRAIN, *work, "--out", str(again), "--coordinator", coordinator,
               "--num-processes", "2", "--process-id", str(i), devices=2) for i in range(2)],
      timeout=600)
  for stage in ("cnn", "dnn", "fusion"):
    assert f"[{stage}] resumed from" in outputs[0], outputs[0][-3000:]
  _assert_same_variables(shared, again)
  code, output = worker.finish(_merjax(*TRAIN, "--out", str(tmp_path / "one"), devices=4),
                               timeout=600)
  assert code == 0, output[-3000:]
  for model_dir in (shared, tmp_path / "one"):
    assert sorted(p.name for p in model_dir.iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir())
  clips = [write_clip(str(tmp_path / f"song{i}.wav"), seconds=4.0, sample_rate=16000,
                      channels=1, seed=i) for i in range(3)]
  two, one = _predict(shared, clips), _predict(tmp_path / "one", clips)
  assert sorted(two) == sorted(one)
  for path, probabilities in one.items():
    quadrants = sorted(probabilities)
    assert quadrants == ["Q1", "Q2", "Q3", "Q4"]
    np.testing.assert_allclose([two[path][q] for q in quadrants],
                               [probabilities[q] for q in quadrants], atol=2e-4, err_msg=path)
