"""The CNN's valid convolutions, formulated for XLA:CPU's faster kernels.

XLA:CPU runs a convolution either through YNNPACK, single-threaded for these shapes, or
through Eigen, which uses every core. It picks YNNPACK for NHWC convolutions unless, among
other conditions, the output is spatially larger than the input or both feature counts are
at most 16 (``xla/backends/cpu/ynn_support.cc``). Measured on the paper's second block
(32 x 468 x 63 x 32 inputs, 2 cores) the Eigen forms below take about half the time:

- forward: the convolution with one extra row of padding, so the output is larger than the
  input, cropped to the valid region (the same sums of the same products);
- input gradient: the "full" correlation with the flipped kernel, written with the
  convolution's own padding (its output is larger than its input);
- kernel gradient: one convolution per block of at most 16 examples and 16 output channels,
  summed over the example blocks.

With several CPU devices (data parallelism over virtual devices) the plain form is kept:
each device's program then runs YNNPACK's kernels on its own thread, and Eigen's would
compete for the thread pool that also runs the devices' programs, whose collectives block
their threads (XLA aborts a collective that waits more than 40 s). On other backends
:func:`conv2d_valid` is ``lax.conv_general_dilated`` and its autodiff.
"""

from __future__ import annotations

import functools
import operator

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ("NHWC", "HWIO", "NHWC")
_BLOCK = 16  # YNNPACK declines convolutions whose feature counts are all <= 16


def _conv(x, kernel, padding):
  return lax.conv_general_dilated(x, kernel, (1, 1), padding, dimension_numbers=_NHWC)


def _forward(x: jax.Array, kernel: jax.Array) -> jax.Array:
  kh, kw = kernel.shape[:2]
  height, width = x.shape[1] - kh + 1, x.shape[2] - kw + 1
  # Output height height + kh (> input height); the valid rows start at kh - 1.
  out = _conv(x, kernel, ((kh - 1, kh), (0, 0)))
  return out[:, kh - 1:kh - 1 + height, :width]


def _input_gradient(g: jax.Array, kernel: jax.Array) -> jax.Array:
  kh, kw = kernel.shape[:2]
  flipped = jnp.flip(kernel, (0, 1)).swapaxes(2, 3)  # (kh, kw, out, in)
  return _conv(g, flipped, ((kh - 1, kh - 1), (kw - 1, kw - 1)))


def _kernel_gradient(x: jax.Array, g: jax.Array, kernel_shape) -> jax.Array:
  """dw[i, j, c, o] = sum_{b, h, w} x[b, h + i, w + j, c] g[b, h, w, o], in blocks."""
  batch, out_channels = x.shape[0], g.shape[-1]
  blocks = []
  for o in range(0, out_channels, _BLOCK):
    parts = (lax.conv_general_dilated(
        x[b:b + _BLOCK], g[b:b + _BLOCK, ..., o:o + _BLOCK], (1, 1), "VALID",
        dimension_numbers=("CHWN", "IHWO", "HWNC")) for b in range(0, batch, _BLOCK))
    blocks.append(functools.reduce(operator.add, parts))
  out = blocks[0] if len(blocks) == 1 else jnp.concatenate(blocks, axis=-1)
  return out.reshape(kernel_shape)


@jax.custom_vjp
def _conv2d_valid_cpu(x: jax.Array, kernel: jax.Array) -> jax.Array:
  return _forward(x, kernel)


def _fwd(x, kernel):
  return _forward(x, kernel), (x, kernel)


def _bwd(residuals, g):
  x, kernel = residuals
  g_x = _input_gradient(g, kernel).astype(x.dtype)
  g_kernel = _kernel_gradient(x, g, kernel.shape).astype(kernel.dtype)
  return g_x, g_kernel


_conv2d_valid_cpu.defvjp(_fwd, _bwd)


@functools.cache
def on_cpu() -> bool:
  """Whether computations run on XLA:CPU (the default backend)."""
  return jax.default_backend() == "cpu"


def eigen_forms() -> bool:
  """Whether :func:`conv2d_valid` uses the Eigen forms: XLA:CPU with one local device."""
  return on_cpu() and jax.local_device_count() == 1


def conv2d_valid(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Valid, unit-stride 2-D convolution (cross-correlation), as ``nn.Conv`` computes it.

  Args:
    x: inputs [shape=(batch, height, width, in_channels)].
    kernel: [shape=(kh, kw, in_channels, out_channels)], same dtype as ``x``.

  Returns:
    [shape=(batch, height - kh + 1, width - kw + 1, out_channels)].
  """
  if eigen_forms():
    return _conv2d_valid_cpu(x, kernel)
  return _conv(x, kernel, "VALID")
