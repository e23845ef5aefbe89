"""The fast CNN path (merjax.models.kernels.dropout, conv, fused) equals Flax's layers.

Each fast op is compared with the plain computation it replaces, in values and gradients:
the Threefry bits and dropout masks bit for bit, the convolution and the fused
Conv -> BatchNorm -> Dropout -> MaxPool block to float32 rounding (relative to each
gradient's largest entry), with and without the example mask, and the whole CNN in float32
and bfloat16. (tests/test_models.py checks the reshape max pool on its own.)
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax import lax

from merjax.config import ModelConfig
from merjax.models import CNN
from merjax.models.kernels import conv, dropout, fused
from merjax.models.layers import max_pool


def _close(a, b, *, rtol=2e-5):
  """Equal up to float32 rounding, relative to the largest magnitude of ``b``."""
  a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
  scale = max(float(np.abs(b).max()), 1e-12)
  np.testing.assert_allclose(a, b, rtol=0, atol=rtol * scale)


@pytest.mark.parametrize("shape", [(7,), (3, 5, 11), (2, 93, 17, 32)])
def test_threefry_bits_are_jax_random_bits(shape):
  for key in (jax.random.key(0), jax.random.fold_in(jax.random.key(42), 7),
              jax.random.PRNGKey(3)):
    assert dropout.fast_bits_supported(key)
    np.testing.assert_array_equal(jax.jit(dropout.threefry_bits, static_argnums=1)(key, shape),
                                  jax.random.bits(key, shape))
    for p in (0.9, 0.6, 0.123):
      np.testing.assert_array_equal(dropout.bernoulli(key, p, shape),
                                    jax.random.bernoulli(key, p, shape))


def test_other_key_implementations_fall_back_to_jax_random():
  key = jax.random.key(5, impl="rbg")
  assert not dropout.fast_bits_supported(key)
  np.testing.assert_array_equal(dropout.bernoulli(key, 0.9, (4, 6)),
                                jax.random.bernoulli(key, 0.9, (4, 6)))


@pytest.mark.parametrize("rate,broadcast_dims", [(0.1, ()), (0.4, (1,)), (0.0, ()),
                                                 (1.0, ())])
def test_dropout_module_equals_flax_dropout(rate, broadcast_dims):
  x = jax.random.normal(jax.random.key(1), (3, 10, 7))
  rngs = {"dropout": jax.random.key(2)}
  ours = dropout.Dropout(rate, broadcast_dims=broadcast_dims).apply({}, x, deterministic=False,
                                                                    rngs=rngs)
  theirs = nn.Dropout(rate, broadcast_dims=broadcast_dims).apply({}, x, deterministic=False,
                                                                 rngs=rngs)
  np.testing.assert_array_equal(ours, theirs)
  np.testing.assert_array_equal(dropout.Dropout(rate).apply({}, x, deterministic=True), x)


@pytest.mark.parametrize("shape,channels", [((3, 12, 9, 1), 5), ((20, 11, 8, 3), 20),
                                            ((2, 9, 10, 32), 32)])
def test_conv2d_valid_equals_lax_conv_in_values_and_gradients(shape, channels):
  # 20 examples and 20 channels exercise the uneven blocks of the kernel gradient.
  x = jax.random.normal(jax.random.key(0), shape)
  kernel = jax.random.normal(jax.random.key(1), (3, 3, shape[-1], channels))
  def plain(a, k):
    return lax.conv_general_dilated(a, k, (1, 1), "VALID",
                                    dimension_numbers=("NHWC", "HWIO", "NHWC"))

  out = jax.jit(conv.conv2d_valid)(x, kernel)
  ref = plain(x, kernel)
  assert out.shape == ref.shape == (shape[0], shape[1] - 2, shape[2] - 2, channels)
  _close(out, ref)
  g = jax.random.normal(jax.random.key(2), ref.shape)
  grads = jax.jit(lambda a, k: jax.vjp(conv.conv2d_valid, a, k)[1](g))(x, kernel)
  ref_grads = jax.vjp(plain, x, kernel)[1](g)
  for a, b in zip(grads, ref_grads):
    _close(a, b)


def _reference_block(x, kernel, conv_bias, scale, bias, example_mask, key, *, rate, pool,
                     epsilon):
  """nn.Conv -> nn.BatchNorm -> nn.Dropout -> flax max_pool, with the same variables."""
  y = nn.Conv(kernel.shape[-1], kernel.shape[:2], padding="VALID").apply(
      {"params": {"kernel": kernel, "bias": conv_bias}}, x)
  bn_mask = None if example_mask is None else example_mask[:, None, None, None]
  z, updates = nn.BatchNorm(use_running_average=False, momentum=0.0, epsilon=epsilon).apply(
      {"params": {"scale": scale, "bias": bias},
       "batch_stats": {"mean": jnp.zeros_like(scale), "var": jnp.ones_like(scale)}},
      y, mask=bn_mask, mutable=["batch_stats"])
  if rate > 0:
    z = nn.Dropout(rate).apply({}, z, deterministic=False, rng=key)
  pooled = max_pool(z, pool, impl="plain")
  # momentum 0: the running averages are the batch statistics themselves.
  return pooled, updates["batch_stats"]["mean"], updates["batch_stats"]["var"]


@pytest.mark.parametrize("in_channels,pool,rate,masked,cpu_forms", [
    (1, (2, 2), 0.1, False, True),   # first block: conv taps fused into the passes
    (1, (3, 2), 0.3, True, True),
    (4, (2, 2), 0.1, True, True),    # uneven: a row and a column fall outside the windows
    (4, (3, 2), 0.0, False, True),   # last block: no dropout
    (4, (2, 2), 0.1, True, False),   # the forms used off XLA:CPU (GPU, TPU)
])
def test_fused_block_equals_flax_layers(in_channels, pool, rate, masked, cpu_forms,
                                        monkeypatch):
  monkeypatch.setattr(conv, "on_cpu", lambda: cpu_forms)
  monkeypatch.setattr(conv, "eigen_forms", lambda: cpu_forms)
  x = jax.random.normal(jax.random.key(0), (5, 21, 15, in_channels))
  k = jax.random.split(jax.random.key(1), 5)
  args = (jax.random.normal(k[0], (3, 3, in_channels, 6)) * 0.5,
          jax.random.normal(k[1], (6,)) * 0.1, 1.0 + 0.2 * jax.random.normal(k[2], (6,)),
          0.1 * jax.random.normal(k[3], (6,)))
  example_mask = jnp.array([True, True, False, True, True]) if masked else None
  key = jax.random.key(9) if rate > 0 else None
  static = dict(rate=rate, pool=pool, epsilon=1e-3)

  def ours(x, kernel, conv_bias, scale, bias):
    return fused.conv_bn_dropout_pool(x, kernel=kernel, conv_bias=conv_bias, scale=scale,
                                      bias=bias, example_mask=example_mask, key=key, **static)

  def theirs(*a):
    return _reference_block(*a, example_mask, key, **static)

  out, ref = jax.jit(ours)(x, *args), theirs(x, *args)
  np.testing.assert_array_equal(out[0].shape, ref[0].shape)
  for a, b in zip(out, ref):
    _close(a, b)
  # Gradients of a loss on all three outputs, w.r.t. the input and every variable.
  cot = jax.random.normal(jax.random.key(3), ref[0].shape)

  def loss(fn):
    return lambda *a: (lambda o: (o[0] * cot).sum() + o[1].sum() - 0.5 * o[2].sum())(fn(*a))

  g_ours = jax.jit(jax.grad(loss(ours), argnums=range(5)))(x, *args)
  g_ref = jax.grad(loss(theirs), argnums=range(5))(x, *args)
  for name, a, b in zip(("x", "kernel", "conv_bias", "scale", "bias"), g_ours, g_ref):
    if name == "conv_bias":
      # BatchNorm cancels the conv bias: only the statistics' gradient remains (d mean/d b).
      _close(a, b, rtol=1e-4)
    else:
      _close(a, b)


def _cnn_loss(model, variables, mels, labels, mask):
  def loss(params):
    logits, updates = model.apply({**variables, "params": params}, mels, train=True, mask=mask,
                                  rngs={"dropout": jax.random.key(4)}, mutable=["batch_stats"])
    picked = jax.nn.log_softmax(logits)[jnp.arange(len(labels)), labels]
    return -(picked * mask).sum(), (logits, updates["batch_stats"])
  return loss


def test_fast_cnn_equals_plain_cnn_with_masked_padding_and_shares_checkpoints():
  mels = jax.random.normal(jax.random.key(3), (5, 64, 100))
  labels, mask = jnp.array([0, 3, 1, 2, 0]), jnp.array([1.0, 1.0, 1.0, 1.0, 0.0])
  fast, plain = CNN(ModelConfig(cnn_impl="fast")), CNN(ModelConfig(cnn_impl="plain"))
  init = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
  variables = plain.init(init, mels, train=False)
  assert jax.tree.map(jnp.shape, fast.init(init, mels, train=False)) == \
      jax.tree.map(jnp.shape, variables)
  (loss_f, (logits_f, stats_f)), grads_f = jax.jit(jax.value_and_grad(
      _cnn_loss(fast, variables, mels, labels, mask), has_aux=True))(variables["params"])
  (loss_p, (logits_p, stats_p)), grads_p = jax.jit(jax.value_and_grad(
      _cnn_loss(plain, variables, mels, labels, mask), has_aux=True))(variables["params"])
  _close(loss_f, loss_p)
  _close(logits_f, logits_p)
  for a, b in zip(jax.tree.leaves(stats_f), jax.tree.leaves(stats_p)):
    _close(a, b)
  flat_f = jax.tree_util.tree_flatten_with_path(grads_f)[0]
  for (path, a), b in zip(flat_f, jax.tree.leaves(grads_p)):
    # Conv biases get only rounding noise around 0 (BatchNorm cancels them) in both paths.
    if "conv" in jax.tree_util.keystr(path) and path[-1].key == "bias":
      assert float(jnp.abs(a).max()) < 1e-4 and float(jnp.abs(b).max()) < 1e-4
    else:
      _close(a, b, rtol=5e-5)
  # Inference on the same variables.
  infer = jax.jit(lambda model, x: model.apply(variables, x, train=False), static_argnums=0)
  _close(infer(fast, mels), infer(plain, mels))


def test_fast_cnn_trains_in_bfloat16_like_plain():
  mels = jax.random.normal(jax.random.key(3), (4, 64, 100))
  labels, mask = jnp.array([0, 3, 1, 2]), jnp.ones(4)
  variables = CNN(ModelConfig()).init({"params": jax.random.key(0),
                                       "dropout": jax.random.key(1)}, mels, train=False)

  def grads(impl, dtype):
    model = CNN(ModelConfig(cnn_impl=impl, dtype=dtype))
    return jax.jit(jax.grad(lambda p: _cnn_loss(model, variables, mels, labels, mask)(p)[0]))(
        variables["params"])

  def flat(tree):
    return np.concatenate([np.ravel(np.asarray(g, np.float64)) for g in jax.tree.leaves(tree)])

  reference = flat(grads("plain", "float32"))
  for impl in ("fast", "plain"):
    g = grads(impl, "bfloat16")
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(g))
    g = flat(g)
    assert np.isfinite(g).all()
    cosine = g @ reference / (np.linalg.norm(g) * np.linalg.norm(reference))
    assert cosine > 0.97, (impl, cosine)
