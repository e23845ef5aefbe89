"""Train step, stopping rules, best-epoch weights, NaN detection and the frozen stage 3."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from merjax import parallel
from merjax.config import Config, ModelConfig, TrainConfig
from merjax.models import CNN, DNN
from merjax.train import (
  EarlyStopping,
  StageData,
  TrainingDivergedError,
  create_state,
  train_classifier,
  train_hybrid,
)
from merjax.train.steps import jit_train_step, mesh_eval_step

MESH = parallel.make_data_mesh(devices=1)


def _blobs(n=64, d=12, seed=0):
  rng = np.random.default_rng(seed)
  labels = np.arange(n) % 4
  centers = rng.normal(size=(4, d)) * 2.0
  return (centers[labels] + rng.normal(size=(n, d))).astype(np.float32), labels.astype(np.int32)


def test_train_step_lowers_the_loss_on_a_fixed_batch():
  x = jax.random.normal(jax.random.key(0), (8, 128, 100))
  batch = {"inputs": x, "label": jnp.array([0, 1, 2, 3] * 2), "mask": jnp.ones(8)}
  state = create_state(CNN(ModelConfig()), x[:1], TrainConfig(optimizer="adam",
                                                              learning_rate=1e-3),
                       rng=jax.random.key(1))
  evaluate = mesh_eval_step(MESH)
  before = float(evaluate(state, batch)["loss_sum"])
  for _ in range(5):
    state, metrics = jit_train_step(state, batch, jax.random.key(2))
  after = float(evaluate(state, batch)["loss_sum"])
  assert after < before
  assert int(state.step) == 5
  assert np.isfinite(float(metrics["grad_norm"])) and float(metrics["grad_norm"]) > 0


def test_padded_examples_do_not_change_the_step():
  x, y = _blobs(6)
  cfg = TrainConfig(optimizer="sgd", learning_rate=0.1)
  model = DNN(ModelConfig(dnn_dropout=0.0))
  state = create_state(model, jnp.asarray(x[:1]), cfg, rng=jax.random.key(0))
  plain, _ = jit_train_step(jax.tree.map(jnp.copy, state),
                            {"inputs": x[:4], "label": y[:4], "mask": jnp.ones(4)},
                            jax.random.key(1))
  padded_x = np.concatenate([x[:4], 100 * np.ones_like(x[:2])])
  padded, metrics = jit_train_step(
      state, {"inputs": padded_x, "label": y, "mask": jnp.array([1, 1, 1, 1, 0, 0.])},
      jax.random.key(1))
  assert float(metrics["count"]) == 4
  for a, b in zip(jax.tree.leaves(plain.params), jax.tree.leaves(padded.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("vals,trains,patience,cap,stop_at,best,reason", [
    # patience: best at epoch 2 (index 1), then 3 epochs without strict improvement.
    ([0.3, 0.5, 0.5, 0.4, 0.45], [0.1] * 5, 3, 200, 5, 1, "no validation improvement"),
    # the 0.90 rule fires on the epoch whose training accuracy exceeds 0.90 (not equals).
    ([0.3, 0.4, 0.5, 0.6], [0.5, 0.9, 0.91, 0.95], 15, 200, 3, 2, "train accuracy"),
    # the epoch cap.
    ([0.1, 0.2, 0.3], [0.1] * 3, 15, 3, 3, 2, "reached 3 epochs"),
])
def test_stopping_rules_on_scripted_sequences(vals, trains, patience, cap, stop_at, best, reason):
  stopper = EarlyStopping(patience=patience, max_epochs=cap, train_accuracy_stop=0.90)
  stopped_after = None
  for epoch, (v, t) in enumerate(zip(vals, trains)):
    if stopper.update(train_accuracy=t, val_accuracy=v):
      stopped_after = epoch + 1
      break
  assert stopped_after == stop_at
  assert stopper.best_epoch == best
  assert reason in stopper.stop_reason
  restored = EarlyStopping.from_state_dict(stopper.state_dict())
  assert restored == stopper


def test_fit_returns_the_best_validation_epochs_weights():
  x, y = _blobs(96, seed=1)
  seen = {}

  def remember(epoch, record, state, stopper):
    seen[epoch] = (record["val_accuracy"], jax.device_get(state.params))

  result = train_classifier(
      DNN(ModelConfig()), train={"inputs": x[:64], "label": y[:64]},
      val={"inputs": x[64:], "label": y[64:]},
      config=TrainConfig(optimizer="sgd", learning_rate=1e-3, batch_size=16, max_epochs=6,
                         patience=15), mesh=MESH, stage="dnn", log=None, hooks=[remember])
  assert len(result.history) == 6 and result.stop_reason == "reached 6 epochs"
  val_accs = [seen[e][0] for e in range(6)]
  assert result.best_epoch == int(np.argmax(val_accs))  # first maximum, as Keras
  best_params = seen[result.best_epoch][1]
  for a, b in zip(jax.tree.leaves(best_params), jax.tree.leaves(result.state.params)):
    np.testing.assert_array_equal(a, b)


def test_nan_loss_names_stage_and_epoch():
  x, y = _blobs(32)
  x[3, 0] = np.nan
  with pytest.raises(TrainingDivergedError, match=r"stage dnn, epoch 1: .*nan"):
    train_classifier(DNN(ModelConfig()), train={"inputs": x, "label": y},
                     val={"inputs": x, "label": y}, config=TrainConfig(batch_size=8),
                     mesh=MESH, stage="dnn", log=None)


def test_stage3_keeps_branches_bit_identical_and_matches_full_hybrid():
  from merjax.models import Hybrid
  rng = np.random.default_rng(0)
  labels = {s: (np.arange(n) % 4).astype(np.int32)
            for s, n in (("train", 16), ("validate", 8), ("test", 8))}
  mels = {s: rng.normal(size=(len(y), 128, 100)).astype(np.float32) for s, y in labels.items()}
  feats = {s: rng.normal(size=(len(y), 10)).astype(np.float32) for s, y in labels.items()}
  quick = TrainConfig(max_epochs=2, batch_size=8)
  config = Config(cnn=quick, dnn=quick, fusion=quick.replace(optimizer="adam",
                                                             learning_rate=1e-2))
  model, fits = train_hybrid(StageData(mels=mels, features=feats, labels=labels),
                             config=config, mesh=MESH, mel_mean=0.0, mel_std=1.0, log=None)
  for branch in ("cnn", "dnn"):
    for a, b in zip(jax.tree.leaves(fits[branch].state.variables),
                    jax.tree.leaves(getattr(model, branch))):
      np.testing.assert_array_equal(a, b)
  assert fits["fusion"].history  # the fusion really trained
  full = Hybrid(config.model).apply(model.hybrid_variables(), mels["test"], feats["test"],
                                    train=False)
  cached = model.logits(mels=mels["test"], features=feats["test"], which="hybrid")
  np.testing.assert_allclose(full, cached, rtol=1e-4, atol=1e-5)
