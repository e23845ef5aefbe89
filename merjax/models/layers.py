"""Building blocks shared by the branches.

``max_pool`` is mathematically the valid, non-overlapping max pooling of Keras'
``MaxPooling2D(pool_size=p)`` (stride = pool size, remainder dropped). It is written as a
reshape + max with a custom VJP, because XLA's CPU ``select_and_scatter`` (the gradient of
``lax.reduce_window`` max) dominates the CNN's backward pass there (benchmarks/results/train.md).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

# Keras defaults: glorot_uniform for Dense, he_normal for the paper's Conv2D layers.
dense_init = nn.initializers.glorot_uniform()
conv_init = nn.initializers.he_normal()


def _windows(x: jax.Array, pool: tuple[int, int]) -> jax.Array:
  batch, height, width, channels = x.shape
  ph, pw = pool
  x = x[:, : (height // ph) * ph, : (width // pw) * pw]
  return x.reshape(batch, height // ph, ph, width // pw, pw, channels)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def _max_pool_fast(x: jax.Array, pool: tuple[int, int]) -> jax.Array:
  return _windows(x, pool).max(axis=(2, 4))


def _max_pool_fwd(x, pool):
  windows = _windows(x, pool)
  pooled = windows.max(axis=(2, 4))
  is_max = windows == pooled[:, :, None, :, None, :]
  return pooled, (is_max, x.shape)


def _max_pool_bwd(pool, residuals, grad):
  is_max, shape = residuals
  grad_windows = jnp.where(is_max, grad[:, :, None, :, None, :], 0).astype(grad.dtype)
  batch, height, width, channels = shape
  cropped = grad_windows.reshape(batch, is_max.shape[1] * pool[0], is_max.shape[3] * pool[1],
                                 channels)
  full = jnp.pad(cropped, ((0, 0), (0, height - cropped.shape[1]),
                           (0, width - cropped.shape[2]), (0, 0)))
  return (full,)


_max_pool_fast.defvjp(_max_pool_fwd, _max_pool_bwd)


def max_pool(x: jax.Array, pool: tuple[int, int], *, impl: str = "fast") -> jax.Array:
  """Valid max pooling with stride equal to the window.

  Args:
    x: activations [shape=(batch, height, width, channels)].
    pool: window (and stride) over (height, width).
    impl: ``"fast"`` (reshape + max, custom VJP) or ``"plain"`` (``flax.linen.max_pool``).
      Both give the same values; gradients differ only where a window holds tied maxima
      (``"fast"`` gives each tied maximum the gradient, ``"plain"`` only the first).

  Returns:
    Pooled activations [shape=(batch, height // ph, width // pw, channels)].
  """
  pool = tuple(int(p) for p in pool)
  if impl == "fast":
    return _max_pool_fast(x, pool)
  if impl == "plain":
    return nn.max_pool(x, pool, strides=pool, padding="VALID")
  raise ValueError(f"max_pool impl must be 'fast' or 'plain', got {impl!r}")


class MLP(nn.Module):
  """Dense -> ReLU -> Dropout for each hidden width (Keras-default initialisers)."""

  hidden: tuple[int, ...]
  dropout: float
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    for width in self.hidden:
      x = nn.Dense(width, kernel_init=dense_init, dtype=self.dtype)(x)
      x = nn.relu(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
    return x
