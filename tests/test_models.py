"""Model shapes, parameter counts and the fast pooling path."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from merjax.config import ModelConfig
from merjax.models import CNN, DNN, Fusion, Hybrid, flattened_size, max_pool


def _count(params) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(params))


def _init(model, *inputs):
  return model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, *inputs,
                    train=False)


def test_cnn_on_paper_input_flattens_to_4800_and_counts_params():
  cfg = ModelConfig()
  assert flattened_size(cfg, n_mels=128, frames=938) == 25 * 6 * 32
  variables = jax.eval_shape(lambda: _init(CNN(cfg), jnp.zeros((2, 128, 938))))
  body = variables["params"]["body"]
  assert body["embedding"]["kernel"].shape == (4800, 300)
  # Keras summary of the same network: conv 320 + 3 x 9248, BN 4 x 64 trainable,
  # Dense 4800*300+300, head 300*4+4.
  assert _count(variables["params"]) == 320 + 3 * 9248 + 4 * 64 + 1_440_300 + 1_204
  assert _count(variables["batch_stats"]) == 4 * 64
  logits = CNN(cfg).apply(_init(CNN(cfg), jnp.zeros((1, 128, 160))), jnp.ones((3, 128, 160)),
                          train=False)
  assert logits.shape == (3, 4)


def test_dnn_and_fusion_shapes_and_counts():
  cfg = ModelConfig()
  dnn_vars = _init(DNN(cfg), jnp.zeros((1, 50)))
  assert _count(dnn_vars["params"]) == (50 * 512 + 512) + (512 * 256 + 256) + (256 * 100 + 100) \
      + (100 * 4 + 4)
  fusion_vars = _init(Fusion(cfg), jnp.zeros((1, 400)))
  assert _count(fusion_vars["params"]) == (400 * 200 + 200) + (200 * 100 + 100) + (100 * 4 + 4)
  emb = DNN(cfg).apply(dnn_vars, jnp.ones((5, 50)), method=DNN.embed)
  assert emb.shape == (5, 100)


def test_hybrid_embeds_with_frozen_branches():
  cfg = ModelConfig()
  mels, feats = jnp.ones((2, 128, 100)), jnp.ones((2, 30))
  variables = _init(Hybrid(cfg), mels, feats)
  assert set(variables["params"]) == {"cnn", "dnn", "fusion"}

  def loss(params):
    logits = Hybrid(cfg).apply({**variables, "params": params}, mels, feats, train=True,
                               rngs={"dropout": jax.random.key(2)})
    return logits.sum()

  grads = jax.grad(loss)(variables["params"])
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads["cnn"]))
  assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree.leaves(grads["dnn"]))
  assert any(float(jnp.abs(g).max()) > 0.0 for g in jax.tree.leaves(grads["fusion"]))


@pytest.mark.parametrize("shape,pool", [((2, 11, 9, 3), (2, 2)), ((3, 14, 7, 2), (3, 2))])
def test_fast_max_pool_equals_plain_in_values_and_gradients_without_ties(shape, pool):
  x = jax.random.normal(jax.random.key(0), shape)
  cotangent = jax.random.normal(jax.random.key(1),
                                (shape[0], shape[1] // pool[0], shape[2] // pool[1], shape[3]))
  fast = jax.jit(lambda v: max_pool(v, pool, impl="fast"))
  plain = jax.jit(lambda v: max_pool(v, pool, impl="plain"))
  np.testing.assert_array_equal(fast(x), plain(x))
  grad_fast = jax.grad(lambda v: (max_pool(v, pool, impl="fast") * cotangent).sum())(x)
  grad_plain = jax.grad(lambda v: (max_pool(v, pool, impl="plain") * cotangent).sum())(x)
  np.testing.assert_array_equal(grad_fast, grad_plain)


def test_fast_and_plain_cnn_agree_in_outputs_and_gradients():
  mels = jax.random.normal(jax.random.key(3), (2, 128, 120))
  labels = jnp.array([0, 3])
  # Dropout off: the two paths draw their masks differently (tests/test_fast_cnn.py covers it).
  no_dropout = ModelConfig(conv_dropout=0.0, cnn_dense_dropout=0.0)
  fast = CNN(no_dropout.replace(cnn_impl="fast"))
  plain = CNN(no_dropout.replace(cnn_impl="plain"))
  variables = _init(fast, mels)

  def loss(model, params):
    logits, _ = model.apply({**variables, "params": params}, mels, train=True,
                            rngs={"dropout": jax.random.key(4)}, mutable=["batch_stats"])
    return -jax.nn.log_softmax(logits)[jnp.arange(2), labels].sum()

  np.testing.assert_allclose(loss(fast, variables["params"]), loss(plain, variables["params"]),
                             rtol=1e-6)
  grads_fast = jax.grad(lambda p: loss(fast, p))(variables["params"])
  grads_plain = jax.grad(lambda p: loss(plain, p))(variables["params"])
  # atol covers the conv biases: BatchNorm makes their gradient exactly zero, numerically ~1e-6.
  for a, b in zip(jax.tree.leaves(grads_fast), jax.tree.leaves(grads_plain)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_too_short_input_is_rejected_with_its_size():
  with pytest.raises(ValueError, match="20 frames"):
    flattened_size(ModelConfig(), n_mels=128, frames=20)
