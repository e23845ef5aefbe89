"""A CNN block (Conv -> BatchNorm -> Dropout -> MaxPool) as one op with an analytic backward.

Under autodiff the block's layers each make passes over its full-resolution activations
(after the first conv, 32 x 936 x 126 x 32 floats): the conv output plus bias, the masked
statistics, normalisation, the dropout mask, the pool and all their transposes; XLA:CPU also
fuses the dropout mask into every backward consumer and recomputes it there.
:func:`conv_bn_dropout_pool` instead makes

- forward: the conv (one XLA convolution; or, with one input channel, nine multiply-adds
  recomputed inside each pass, so its output is never stored); one pass for the batch
  statistics; one pass that normalises, draws the dropout mask, pools and stores each
  window's routed element as one byte;
- backward: the two per-channel sums of the BatchNorm gradient at pooled resolution, one
  elementwise pass for the conv output's gradient, and the conv's own transposes,

with the textbook BatchNorm backward

  dy = scale / sqrt(var + eps) * (g - m / n * (sum(g) + y_hat * sum(g * y_hat))),

where ``m`` is the example mask and ``n`` the number of unmasked values per channel.

The mathematics is that of ``flax.linen.Conv`` (valid, with bias), ``flax.linen.BatchNorm``
(batch statistics, ``E[y^2] - E[y]^2`` variance), ``flax.linen.Dropout`` (the same mask bits,
:mod:`merjax.models.kernels.dropout`) and valid max pooling whose gradient goes to the first maximum
of each window, as ``flax.linen.max_pool``'s does. ``tests/test_fast_cnn.py`` compares values
and gradients with those layers.
"""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from merjax.models.kernels import conv, dropout
from merjax.models.layers import max_pool, pool_windows

_NO_GRADIENT = 255  # routed index stored where a window's first maximum was dropped out


def _convolve(x: jax.Array, kernel: jax.Array, *, taps: bool) -> jax.Array:
  """Valid convolution without bias, in ``x``'s dtype (kernel cast like ``nn.Conv`` does)."""
  kernel = kernel.astype(x.dtype)
  if not taps:
    return conv.conv2d_valid(x, kernel)
  # One input channel: a sum of shifted products that XLA fuses into the consumer, in
  # float32 like XLA's convolution accumulates.
  kh, kw = kernel.shape[:2]
  height, width = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  x32, k32 = x.astype(jnp.float32), kernel.astype(jnp.float32)
  terms = (x32[:, i:i + height, j:j + width, :1] * k32[i, j, 0]
           for i in range(kh) for j in range(kw))
  return functools.reduce(operator.add, terms).astype(x.dtype)


def _moment(y: jax.Array, example_mask: jax.Array | None, *, power: int) -> jax.Array:
  """Mean of ``y ** power`` per channel, in float32, over the unmasked examples."""
  y = y.astype(jnp.float32)
  if power == 2:
    y = jnp.square(y)
  batch, height, width, _ = y.shape
  if example_mask is None:
    return y.sum((0, 1, 2)) / (batch * height * width)
  # Per-example sums, then the mask: no masked copy of the activations is made.
  weight = example_mask.astype(jnp.float32)[:, None]
  return (y.sum((1, 2)) * weight).sum(0) / (weight.sum() * (height * width))


def _window(windows: jax.Array, k: int) -> jax.Array:
  """The ``k``-th element (row-major) of every window [shape=(batch, hp, wp, channels)]."""
  pw = windows.shape[4]
  return windows[:, :, k // pw, :, k % pw, :]


def _routing_index(windows: jax.Array, keep: jax.Array | None) -> jax.Array:
  """Index of each window's first maximum, or _NO_GRADIENT where that one was dropped out.

  ``flax.linen.max_pool``'s gradient goes to the first maximum of a window; a dropped-out
  element passes none on.
  """
  n = windows.shape[2] * windows.shape[4]
  best = _window(windows, 0)
  index = jnp.zeros(best.shape, jnp.uint8)
  for k in range(1, n):
    value = _window(windows, k)
    better = value > best
    best = jnp.where(better, value, best)
    index = jnp.where(better, jnp.uint8(k), index)
  if keep is not None:
    kept = _window(keep, 0)
    for k in range(1, n):
      kept = jnp.where(index == k, _window(keep, k), kept)
    index = jnp.where(kept, index, jnp.uint8(_NO_GRADIENT))
  return index


def _gather(windows: jax.Array, index: jax.Array) -> jax.Array:
  """The element ``index`` of every window (element 0 where the index is _NO_GRADIENT)."""
  out = _window(windows, 0)
  for k in range(1, windows.shape[2] * windows.shape[4]):
    out = jnp.where(index == k, _window(windows, k), out)
  return out


def _materialised(fn, probe: jax.Array, *operands):
  """``fn(*operands)`` with its results stored, not fused into (and recomputed by) consumers.

  XLA:CPU fuses cheap elementwise producers into every consumer, and drops
  ``optimization_barrier`` before fusion; a conditional is a boundary it keeps. Both
  branches are ``fn``, so the predicate (unknown at compile time) does not matter. Elsewhere
  (a GPU conditional waits for its predicate on the host) ``fn`` is called directly.
  """
  if not conv.on_cpu():
    return fn(*operands)
  return jax.lax.cond(probe == probe, fn, fn, *operands)


def _output_size(source: jax.Array, kernel: jax.Array, *, taps: bool) -> tuple[int, int]:
  """Spatial size of the conv output for the stored source (the input with taps)."""
  if not taps:
    return source.shape[1], source.shape[2]
  return source.shape[1] - kernel.shape[0] + 1, source.shape[2] - kernel.shape[1] + 1


def _block_output(source, kernel, conv_bias, *, taps):
  """The conv output with bias, in the compute dtype, from the stored source."""
  y = _convolve(source, kernel, taps=True) if taps else source
  return y + conv_bias.astype(y.dtype)


def _normalised(y, mean, mul, bias):
  # flax.linen.BatchNorm: float32 arithmetic, then the compute dtype.
  return ((y - mean) * mul + bias).astype(y.dtype)


def _batch_moment(source, kernel, conv_bias, example_mask, *, taps, power):
  return _moment(_block_output(source, kernel, conv_bias, taps=taps), example_mask,
                 power=power)


def _index_pass(source, kernel, conv_bias, mean, mul, bias, key, *, taps, rate, pool):
  """Normalises, draws the dropout mask and returns the routing index of every window."""
  z = _normalised(_block_output(source, kernel, conv_bias, taps=taps), mean, mul, bias)
  keep = None
  if rate > 0.0:
    keep = dropout.bernoulli(key, 1.0 - rate, z.shape)
    z = jax.lax.select(keep, z / (1.0 - rate), jnp.zeros_like(z))
    keep = pool_windows(keep, pool)
  return _routing_index(pool_windows(z, pool), keep)


def _pooled(source, kernel, conv_bias, mean, mul, bias, index, *, taps, rate, pool):
  """Each window's maximum, read at the routed element (a dropped maximum is 0): no mask
  bits are needed."""
  z = _normalised(_block_output(source, kernel, conv_bias, taps=taps), mean, mul, bias)
  if rate > 0.0:
    z = z / (1.0 - rate)
  pooled = _gather(pool_windows(z, pool), index)
  return jnp.where(index == _NO_GRADIENT, jnp.zeros_like(pooled), pooled)


def _forward(x, kernel, conv_bias, scale, bias, example_mask, key, *, taps, rate, pool,
             epsilon):
  # With taps the conv is recomputed inside each pass from x; otherwise stored once. Each
  # pass is materialised (see _materialised): XLA would otherwise store the taps' output
  # and recompute the mask bits in every consumer of the index.
  source = x if taps else _convolve(x, kernel, taps=False)
  # One reduction per moment: with a single consumer each, the taps are fused, not stored.
  # The second waits for the first (its predicate reads it): with several devices each
  # holds an all-reduce, and concurrent blocking collectives can starve XLA:CPU's threads.
  mean = _materialised(functools.partial(_batch_moment, taps=taps, power=1),
                       kernel[0, 0, 0, 0], source, kernel, conv_bias, example_mask)
  mean2 = _materialised(functools.partial(_batch_moment, taps=taps, power=2), mean[0],
                        source, kernel, conv_bias, example_mask)
  batch = source.shape[0]
  height, width = _output_size(source, kernel, taps=taps)
  count = (jnp.float32(batch) if example_mask is None
           else example_mask.sum(dtype=jnp.float32)) * (height * width)
  var = jnp.maximum(0.0, mean2 - jnp.square(mean))
  inv = jax.lax.rsqrt(var + epsilon)
  mul = inv * scale
  index_pass = functools.partial(_index_pass, taps=taps, rate=rate, pool=pool)
  index = _materialised(index_pass, mean[0], source, kernel, conv_bias, mean, mul, bias, key)
  pooled = _materialised(functools.partial(_pooled, taps=taps, rate=rate, pool=pool), mean[0],
                         source, kernel, conv_bias, mean, mul, bias, index)
  residuals = (x, source, kernel, conv_bias, scale, example_mask, mean,
               mean2 - jnp.square(mean), inv, count, index)
  return (pooled, mean, var), residuals


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8, 9, 10))
def _block(x, kernel, conv_bias, scale, bias, example_mask, key, taps, rate, pool, epsilon):
  outputs, _ = _forward(x, kernel, conv_bias, scale, bias, example_mask, key, taps=taps,
                        rate=rate, pool=pool, epsilon=epsilon)
  return outputs


def _block_fwd(x, kernel, conv_bias, scale, bias, example_mask, key, taps, rate, pool,
               epsilon):
  return _forward(x, kernel, conv_bias, scale, bias, example_mask, key, taps=taps, rate=rate,
                  pool=pool, epsilon=epsilon)


def _block_bwd(taps, rate, pool, epsilon, residuals, cotangents):
  del epsilon
  (x, source, kernel, conv_bias, scale, example_mask, mean, raw_var, inv, count,
   index) = residuals
  g_pooled, g_mean, g_var = cotangents
  y = _block_output(source, kernel, conv_bias, taps=taps)
  batch, height, width, channels = y.shape
  ph, pw = pool
  hp, wp = height // ph, width // pw
  # Gradient reaching the BatchNorm output: the pooled gradient at each window's kept first
  # maximum, scaled like the dropout (in the compute dtype, as flax's transpose is).
  g_scaled = g_pooled / (1.0 - rate) if rate > 0.0 else g_pooled
  g_routed = jnp.where(index != _NO_GRADIENT, g_scaled, 0).astype(jnp.float32)
  # The two per-channel sums at pooled resolution: y_hat is needed at routed elements only.
  y_routed = _gather(pool_windows(y, pool), index)
  sum_g = g_routed.sum((0, 1, 2))
  sum_g_yhat = (g_routed * ((y_routed.astype(jnp.float32) - mean) * inv)).sum((0, 1, 2))
  # The conv output's gradient at full resolution, in one elementwise pass.
  offset = np.arange(ph * pw, dtype=np.uint8).reshape(1, 1, ph, 1, pw, 1)
  g_z = jnp.where(index[:, :, None, :, None, :] == offset, g_routed[:, :, None, :, None, :], 0)
  g_z = g_z.reshape(batch, hp * ph, wp * pw, channels)
  g_z = jnp.pad(g_z, ((0, 0), (0, height - hp * ph), (0, width - wp * pw), (0, 0)))
  centred = y.astype(jnp.float32) - mean
  y_hat = centred * inv
  # d var / d E[y^2] is 0 where flax's max(0, .) clipped the variance.
  g_var = jnp.where(raw_var > 0, g_var, 0.0)
  weight = (1.0 / count) if example_mask is None else (
      example_mask.astype(jnp.float32)[:, None, None, None] / count)
  g_y = (scale * inv) * (g_z - weight * (sum_g + y_hat * sum_g_yhat)) \
      + weight * (g_mean + 2.0 * centred * g_var)
  g_y = g_y.astype(y.dtype)
  g_conv_bias = g_y.astype(jnp.float32).sum((0, 1, 2)).astype(conv_bias.dtype)
  _, conv_vjp = jax.vjp(lambda a, k: _convolve(a, k, taps=False), x, kernel)
  g_x, g_kernel = conv_vjp(g_y)
  return g_x, g_kernel, g_conv_bias, sum_g_yhat, sum_g, None, None


_block.defvjp(_block_fwd, _block_bwd)


def conv_bn_dropout_pool(x: jax.Array, *, kernel: jax.Array, conv_bias: jax.Array,
                         scale: jax.Array, bias: jax.Array, example_mask: jax.Array | None,
                         key: jax.Array | None, rate: float, pool: tuple[int, int],
                         epsilon: float) -> tuple[jax.Array, jax.Array, jax.Array]:
  """Training-mode valid Conv, BatchNorm, Dropout and MaxPool with an analytic VJP.

  Args:
    x: block inputs [shape=(batch, height, width, in_channels)] in the compute dtype.
    kernel: conv kernel [shape=(kh, kw, in_channels, channels)] (float32 parameters).
    conv_bias: conv bias [shape=(channels,)].
    scale, bias: BatchNorm parameters [shape=(channels,)].
    example_mask: optional boolean [shape=(batch,)]; masked-out examples do not enter the
      statistics (their outputs are still normalised).
    key: the dropout key (Threefry), or None when ``rate`` is 0.
    rate: dropout rate; 0 for a block without Dropout.
    pool: pooling window (and stride) over (height, width).
    epsilon: BatchNorm epsilon.

  Returns:
    ``(pooled, mean, var)``: pooled activations [shape=(batch, (height - kh + 1) // ph,
    (width - kw + 1) // pw, channels)] in ``x``'s dtype and the float32 batch statistics of
    the conv outputs, for the running averages.
  """
  if rate > 0.0 and key is None:
    raise ValueError("conv_bn_dropout_pool needs a dropout key when rate > 0")
  if example_mask is not None:
    example_mask = example_mask.astype(bool)
  taps = x.shape[-1] == 1
  ph, pw = pool
  return _block(x, kernel, conv_bias, scale, bias, example_mask, key, taps, float(rate),
                (int(ph), int(pw)), float(epsilon))


class DropoutKey(nn.Module):
  """Draws the key ``flax.linen.Dropout`` would draw at this module's path."""

  @nn.compact
  def __call__(self) -> jax.Array:
    return self.make_rng("dropout")


class ConvParams(nn.Module):
  """The variables of ``nn.Conv(features, kernel_size)`` (``kernel``, ``bias``), unapplied."""

  features: int
  kernel_size: tuple[int, int] = (3, 3)
  kernel_init: nn.initializers.Initializer = nn.initializers.he_normal()

  @nn.compact
  def __call__(self, in_channels: int) -> tuple[jax.Array, jax.Array]:
    kernel = self.param("kernel", self.kernel_init, (*self.kernel_size, in_channels,
                                                      self.features), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
    return kernel, bias


class BatchNormDropoutPool(nn.Module):
  """BatchNorm -> Dropout -> MaxPool of a block whose conv variables are passed in.

  The module holds ``flax.linen.BatchNorm``'s variables (``scale``, ``bias``;
  ``batch_stats`` ``mean``, ``var``), so with :class:`ConvParams` the parameter tree is that
  of ``nn.Conv`` + ``nn.BatchNorm`` and checkpoints are interchangeable. It applies the conv
  too, because in training the whole block is one op (:func:`conv_bn_dropout_pool`).

  Attributes:
    pool: pooling window over (height, width).
    rate: dropout rate (0: no Dropout layer).
    momentum, epsilon: BatchNorm settings (Keras defaults 0.99, 1e-3).
    dtype: compute dtype.
  """

  pool: tuple[int, int]
  rate: float = 0.0
  momentum: float = 0.99
  epsilon: float = 1e-3
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, kernel: jax.Array, conv_bias: jax.Array, train: bool,
               mask: jax.Array | None = None, dropout_key: jax.Array | None = None
               ) -> jax.Array:
    """Convolves, normalises, drops out and pools [shape=(batch, height, width, in)].

    Args:
      x: block inputs.
      kernel, conv_bias: the block's conv variables (from :class:`ConvParams`).
      train: batch statistics, dropout and running-average updates; else running averages.
      mask: optional [shape=(batch,)] example weights; zeros are left out of the statistics.
      dropout_key: the unfused network's Dropout key (see :class:`DropoutKey`).

    Returns:
      Pooled activations [shape=(batch, height', width', channels)].
    """
    channels = kernel.shape[-1]
    ra_mean = self.variable("batch_stats", "mean", lambda s: jnp.zeros(s, jnp.float32),
                            (channels,))
    ra_var = self.variable("batch_stats", "var", lambda s: jnp.ones(s, jnp.float32),
                           (channels,))
    scale = self.param("scale", nn.initializers.ones, (channels,), jnp.float32)
    bias = self.param("bias", nn.initializers.zeros, (channels,), jnp.float32)
    x = x.astype(self.dtype)
    if not train:
      y = _block_output(_convolve(x, kernel, taps=False), kernel, conv_bias, taps=False)
      mul = jax.lax.rsqrt(ra_var.value + self.epsilon) * scale
      z = ((y - ra_mean.value) * mul + bias).astype(self.dtype)
      return max_pool(z, self.pool, impl="fast")
    example_mask = None if mask is None else mask.reshape(-1) > 0
    pooled, mean, var = conv_bn_dropout_pool(
        x, kernel=kernel, conv_bias=conv_bias, scale=scale, bias=bias,
        example_mask=example_mask, key=dropout_key, rate=self.rate, pool=self.pool,
        epsilon=self.epsilon)
    if not self.is_initializing():
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return pooled
