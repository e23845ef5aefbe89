"""BatchNorm -> Dropout -> MaxPool of a CNN block as one op with an analytic backward pass.

In training mode the three layers touch the block's full-resolution activations (after the
first conv, 32 x 936 x 126 x 32 floats) many times under autodiff: statistics, normalisation,
the dropout mask, the pool and their transposes each make a pass, and XLA:CPU lowers the
masked mean's element count as a reduction over a broadcast. :func:`bn_dropout_pool` makes
two passes forward (statistics; normalise + mask + pool, keeping the index of each window's
maximum as one byte) and two backward (the two per-channel sums of the BatchNorm gradient;
the input gradient), with the textbook BatchNorm backward

  dx = scale / sqrt(var + eps) * (g - m / n * (sum(g) + x_hat * sum(g * x_hat))),

where ``m`` is the example mask and ``n`` the number of unmasked values per channel.

The mathematics is that of ``flax.linen.BatchNorm`` (batch statistics, ``E[x^2] - E[x]^2``
variance), ``flax.linen.Dropout`` (the same mask bits, :mod:`merjax.models.dropout`) and
valid max pooling whose gradient goes to the first maximum of each window, as
``flax.linen.max_pool``'s does. Tests compare values and gradients with those layers.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from merjax.models import dropout
from merjax.models.layers import max_pool

_NO_GRADIENT = 255  # window index stored where the maximum was dropped out


def _stats(y: jax.Array, example_mask: jax.Array | None):
  """Batch mean, E[y^2] and the count per channel, in float32, over unmasked examples."""
  y = y.astype(jnp.float32)
  batch, height, width, _ = y.shape
  if example_mask is None:
    count = jnp.float32(batch * height * width)
    return y.sum((0, 1, 2)) / count, jnp.square(y).sum((0, 1, 2)) / count, count
  # Per-example sums, then the mask: no masked copy of the activations is made.
  weight = example_mask.astype(jnp.float32)[:, None]
  count = weight.sum() * (height * width)
  return ((y.sum((1, 2)) * weight).sum(0) / count,
          (jnp.square(y).sum((1, 2)) * weight).sum(0) / count, count)


def _windows(x: jax.Array, pool: tuple[int, int]) -> jax.Array:
  """Crops to whole windows: [shape=(batch, hp, ph, wp, pw, channels)]."""
  batch, height, width, channels = x.shape
  ph, pw = pool
  x = x[:, : (height // ph) * ph, : (width // pw) * pw]
  return x.reshape(batch, height // ph, ph, width // pw, pw, channels)


def _window_offsets(pool: tuple[int, int]):
  return [(a, c) for a in range(pool[0]) for c in range(pool[1])]


def _pool_with_index(windows: jax.Array, keep: jax.Array | None):
  """Each window's maximum and the index of its first maximum, or _NO_GRADIENT if dropped.

  ``flax.linen.max_pool``'s gradient goes to the first maximum of a window; a dropped-out
  one passes none on.
  """
  ph, pw = windows.shape[2], windows.shape[4]
  best = windows[:, :, 0, :, 0, :]
  index = jnp.zeros(best.shape, jnp.uint8)
  for k in range(1, ph * pw):
    value = windows[:, :, k // pw, :, k % pw, :]
    better = value > best
    best = jnp.where(better, value, best)
    index = jnp.where(better, jnp.uint8(k), index)
  if keep is not None:
    kept = keep[:, :, 0, :, 0, :]
    for k in range(1, ph * pw):
      kept = jnp.where(index == k, keep[:, :, k // pw, :, k % pw, :], kept)
    index = jnp.where(kept, index, jnp.uint8(_NO_GRADIENT))
  return best, index


def _normalise_drop_pool(y, mean, mul, bias, key, *, rate, pool):
  """The forward pass after the statistics: pooled outputs and the gradient routing index."""
  # flax.linen.BatchNorm: float32 arithmetic, then the compute dtype.
  z = ((y - mean) * mul + bias).astype(y.dtype)
  keep = None
  if rate > 0.0:
    keep_prob = 1.0 - rate
    keep = dropout.bernoulli(key, keep_prob, y.shape)
    z = jax.lax.select(keep, z / keep_prob, jnp.zeros_like(z))
    keep = _windows(keep, pool)
  return _pool_with_index(_windows(z, pool), keep)


def _materialised(fn, **arrays):
  """``fn(**arrays)`` with its results stored, not fused into (and recomputed by) consumers.

  XLA:CPU fuses cheap elementwise producers into every consumer and drops
  ``optimization_barrier`` before fusion; a conditional is a boundary it keeps. Both
  branches are ``fn``, so the predicate (not known at compile time) does not matter.
  """
  probe = jax.tree.leaves(arrays)[0].reshape(-1)[0]
  return jax.lax.cond(probe == probe, lambda a: fn(**a), lambda a: fn(**a), arrays)


def _forward(y, scale, bias, example_mask, key, *, rate, pool, epsilon):
  mean, mean2, count = _stats(y, example_mask)
  var = jnp.maximum(0.0, mean2 - jnp.square(mean))
  inv = jax.lax.rsqrt(var + epsilon)
  mul = inv * scale
  pooled, index = _materialised(functools.partial(_normalise_drop_pool, rate=rate, pool=pool),
                                y=y, mean=mean, mul=mul, bias=bias, key=key)
  return pooled, mean, var, (mean2 - jnp.square(mean), inv, count, index)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5, 6, 7))
def _bn_dropout_pool(y, scale, bias, example_mask, key, rate, pool, epsilon):
  pooled, mean, var, _ = _forward(y, scale, bias, example_mask, key, rate=rate, pool=pool,
                                  epsilon=epsilon)
  return pooled, mean, var


def _fwd(y, scale, bias, example_mask, key, rate, pool, epsilon):
  pooled, mean, var, (raw_var, inv, count, index) = _forward(
      y, scale, bias, example_mask, key, rate=rate, pool=pool, epsilon=epsilon)
  residuals = (y, scale, example_mask, mean, raw_var, inv, count, index)
  return (pooled, mean, var), residuals


def _bwd(rate, pool, epsilon, residuals, cotangents):
  y, scale, example_mask, mean, raw_var, inv, count, index = residuals
  g_pooled, g_mean, g_var = cotangents
  keep_prob = 1.0 - rate
  # Gradient reaching the BatchNorm output inside the windows: the pooled gradient at the
  # kept maximum, scaled like the dropout (in the compute dtype, as flax's transpose is).
  g_scaled = g_pooled / keep_prob if rate > 0.0 else g_pooled
  batch, height, width, channels = y.shape
  ph, pw = pool
  hp, wp = height // ph, width // pw
  # The two per-channel sums at pooled resolution: only each window's routed element has
  # a gradient, so x_hat is needed there alone.
  g_routed = jnp.where(index != _NO_GRADIENT, g_scaled, 0).astype(jnp.float32)
  windows = _windows(y, pool)
  y_routed = windows[:, :, 0, :, 0, :]
  for k in range(1, ph * pw):
    y_routed = jnp.where(index == k, windows[:, :, k // pw, :, k % pw, :], y_routed)
  sum_g = g_routed.sum((0, 1, 2))
  sum_g_xhat = (g_routed * ((y_routed.astype(jnp.float32) - mean) * inv)).sum((0, 1, 2))
  # The input gradient at full resolution, in one elementwise pass.
  offset = np.arange(ph * pw, dtype=np.uint8).reshape(1, 1, ph, 1, pw, 1)
  g_z = jnp.where(index[:, :, None, :, None, :] == offset, g_routed[:, :, None, :, None, :], 0)
  g_z = g_z.reshape(batch, hp * ph, wp * pw, channels)
  g_z = jnp.pad(g_z, ((0, 0), (0, height - hp * ph), (0, width - wp * pw), (0, 0)))
  centred = y.astype(jnp.float32) - mean
  x_hat = centred * inv
  # d var / d mean2 is 0 where flax's max(0, .) clipped the variance.
  g_var = jnp.where(raw_var > 0, g_var, 0.0)
  weight = (1.0 / count) if example_mask is None else (
      example_mask.astype(jnp.float32)[:, None, None, None] / count)
  g_y = (scale * inv) * (g_z - weight * (sum_g + x_hat * sum_g_xhat)) \
      + weight * (g_mean + 2.0 * centred * g_var)
  return g_y.astype(y.dtype), sum_g_xhat, sum_g, None, None


_bn_dropout_pool.defvjp(_fwd, _bwd)


def bn_dropout_pool(y: jax.Array, *, scale: jax.Array, bias: jax.Array,
                    example_mask: jax.Array | None, key: jax.Array | None, rate: float,
                    pool: tuple[int, int], epsilon: float
                    ) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Training-mode BatchNorm, Dropout and valid MaxPool with an analytic VJP.

  Args:
    y: conv outputs [shape=(batch, height, width, channels)] (float32 or bfloat16).
    scale, bias: BatchNorm parameters [shape=(channels,)] (float32).
    example_mask: optional boolean [shape=(batch,)]; masked-out examples do not enter the
      statistics (their outputs are still normalised).
    key: the dropout key (Threefry), or None when ``rate`` is 0.
    rate: dropout rate; 0 for a block without Dropout.
    pool: pooling window (and stride) over (height, width).
    epsilon: BatchNorm epsilon.

  Returns:
    ``(pooled, mean, var)``: pooled activations [shape=(batch, height // ph, width // pw,
    channels)] in ``y``'s dtype and the float32 batch statistics for the running averages.
  """
  if rate > 0.0 and key is None:
    raise ValueError("bn_dropout_pool needs a dropout key when rate > 0")
  if example_mask is not None:
    example_mask = example_mask.astype(bool)
  pool = tuple(int(p) for p in pool)
  return _bn_dropout_pool(y, scale, bias, example_mask, key, float(rate), pool, float(epsilon))


class _DropoutKey(nn.Module):
  """Draws the key ``flax.linen.Dropout`` would draw at this module's path."""

  @nn.compact
  def __call__(self) -> jax.Array:
    return self.make_rng("dropout")


class BatchNormDropoutPool(nn.Module):
  """``BatchNorm -> Dropout -> max_pool`` with ``flax.linen.BatchNorm``'s variables.

  The variables (``scale``, ``bias``; ``batch_stats`` ``mean``, ``var``) are those of an
  ``nn.BatchNorm`` with the same name, so checkpoints are interchangeable. The dropout key is
  drawn at ``dropout_name`` in the parent, where the unfused network has its ``nn.Dropout``.

  Attributes:
    pool: pooling window over (height, width).
    rate: dropout rate (0: no Dropout layer).
    dropout_name: name of the unfused network's Dropout module in the parent scope.
    momentum, epsilon: BatchNorm settings (Keras defaults 0.99, 1e-3).
    dtype: compute dtype of the outputs.
  """

  pool: tuple[int, int]
  rate: float = 0.0
  dropout_name: str | None = None
  momentum: float = 0.99
  epsilon: float = 1e-3
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool, mask: jax.Array | None = None,
               dropout_key: jax.Array | None = None) -> jax.Array:
    """Normalises, drops out and pools [shape=(batch, height, width, channels)].

    Args:
      x: conv outputs.
      train: batch statistics, dropout and running-average updates; else running averages.
      mask: optional [shape=(batch,)] example weights; zeros are left out of the statistics.
      dropout_key: the key of the unfused network's Dropout (see :class:`_DropoutKey`).

    Returns:
      Pooled activations [shape=(batch, height // ph, width // pw, channels)].
    """
    channels = x.shape[-1]
    ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32),
                            (channels,))
    ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32),
                           (channels,))
    scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
    x = x.astype(self.dtype)
    if not train:
      mul = jax.lax.rsqrt(ra_var.value + self.epsilon) * scale
      z = ((x - ra_mean.value) * mul + bias).astype(self.dtype)
      return max_pool(z, self.pool, impl="fast")
    example_mask = None if mask is None else mask.reshape(-1) > 0
    pooled, mean, var = bn_dropout_pool(x, scale=scale, bias=bias, example_mask=example_mask,
                                        key=dropout_key, rate=self.rate, pool=self.pool,
                                        epsilon=self.epsilon)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return pooled
