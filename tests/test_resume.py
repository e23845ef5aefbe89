"""Exact resume: orbax checkpoints every epoch, restart after an interruption or SIGKILL."""

import json
import signal

import _parallel_worker as worker
import jax
import numpy as np
import pytest

from merjax import parallel
from merjax.batches.split import DeviceBatches
from merjax.config import ModelConfig, TrainConfig
from merjax.errors import MerjaxError
from merjax.models import DNN
from merjax.train import create_state, fit


class _Interrupted(Exception):
  pass


ONE_DEVICE = parallel.make_data_mesh(devices=1)


def _data():
  rng = np.random.default_rng(0)
  y = (np.arange(40) % 4).astype(np.int32)
  x = (rng.normal(size=(4, 12))[y] * 2 + rng.normal(size=(40, 12))).astype(np.float32)
  return (DeviceBatches({"inputs": x[:32], "label": y[:32]}, batch_size=8, shuffle=True, seed=1,
                        mesh=ONE_DEVICE),
          DeviceBatches({"inputs": x[32:], "label": y[32:]}, batch_size=8, shuffle=False,
                        mesh=ONE_DEVICE), x)


CONFIG = TrainConfig(optimizer="adam", learning_rate=3e-3, batch_size=8, max_epochs=4,
                     patience=50, train_accuracy_stop=None)


def _fit(workdir=None, *, config=CONFIG, interrupt_after=None, calls=None):
  train, val, x = _data()
  state = create_state(DNN(ModelConfig()), x[:1], config, rng=jax.random.key(0))
  last = {}

  def train_batches(epoch):
    if calls is not None:
      calls.append(epoch)
    return train.epoch(epoch)

  def on_epoch_end(epoch, record, state, stopper):
    last["params"] = jax.device_get(state.params)
    if interrupt_after is not None and epoch + 1 == interrupt_after:
      raise _Interrupted

  result = fit(state, train_batches=train_batches, val_batches=val.epoch, config=config,
               rng=jax.random.key(1), mesh=ONE_DEVICE, stage="dnn", log=None,
               hooks=[on_epoch_end], workdir=workdir)
  return result, last.get("params")


def _assert_equal_trees(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def _without_seconds(history):
  return [{k: v for k, v in record.items() if k != "seconds"} for record in history]


def test_interrupted_fit_resumes_exactly(tmp_path):
  reference, reference_last = _fit()
  with pytest.raises(_Interrupted):
    _fit(tmp_path / "run", interrupt_after=2)
  calls = []
  resumed, resumed_last = _fit(tmp_path / "run", calls=calls)
  assert calls == [2, 3]  # epochs 1-2 came from the checkpoint
  _assert_equal_trees(reference_last, resumed_last)
  _assert_equal_trees(reference.state.params, resumed.state.params)
  assert resumed.best_epoch == reference.best_epoch
  assert _without_seconds(resumed.history) == _without_seconds(reference.history)
  # A finished work dir returns its result without training again.
  calls.clear()
  again, _ = _fit(tmp_path / "run", calls=calls)
  assert calls == []
  _assert_equal_trees(reference.state.params, again.state.params)
  assert again.stop_reason == reference.stop_reason == "reached 4 epochs"
  # Other settings must not silently continue this run.
  with pytest.raises(MerjaxError, match="other settings .*learning_rate"):
    _fit(tmp_path / "run", config=CONFIG.replace(learning_rate=1e-2))


@pytest.mark.slow
def test_sigkilled_run_restarts_to_the_same_params(tmp_path):
  worker.run("resume", "--workdir", str(tmp_path / "a"), "--out", str(tmp_path / "a.npz"))
  code, output = worker.finish(
      worker.start("resume", "--workdir", str(tmp_path / "b"), "--out",
                   str(tmp_path / "killed.npz"), "--kill-after-epoch", "3"), timeout=300)
  assert code == -signal.SIGKILL, output[-3000:]
  assert not (tmp_path / "killed.npz").exists()
  worker.run("resume", "--workdir", str(tmp_path / "b"), "--out", str(tmp_path / "b.npz"))
  a, b = np.load(tmp_path / "a.npz"), np.load(tmp_path / "b.npz")
  # The kill lands while epoch 3's checkpoint is being written: either it made it or the
  # run replays epoch 3 from epoch 2's checkpoint. Both must end bit-identical.
  assert ("resumed from" in str(b["log"])
          and any(f"after epoch {k}" in str(b["log"]) for k in (2, 3))), str(b["log"])
  assert "resumed" not in str(a["log"])
  arrays = [k for k in a.files if k.startswith(("best[", "last["))]
  assert any("batch_stats" in k for k in arrays) and any("kernel" in k for k in arrays)
  for key in arrays:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)
  assert json.loads(str(a["history"])) == json.loads(str(b["history"]))
  assert int(a["best_epoch"]) == int(b["best_epoch"])
