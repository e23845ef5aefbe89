"""Building blocks shared by the branches.

``max_pool`` is the valid, non-overlapping max pooling of Keras' ``MaxPooling2D(pool_size=p)``
(stride = pool size, remainder dropped), in two forms with the same values: Flax's
``reduce_window`` (``"plain"``, what the plain CNN trains through) and a reshape + max over
:func:`pool_windows` (``"fast"``, the inference pass of the fused CPU block in
:mod:`merjax.models.kernels.fused`, whose training pass has its own analytic backward).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

# Keras defaults: glorot_uniform for Dense, he_normal for the paper's Conv2D layers.
dense_init = nn.initializers.glorot_uniform()
conv_init = nn.initializers.he_normal()


def pool_windows(x: jax.Array, pool: tuple[int, int]) -> jax.Array:
  """Crops to whole pooling windows and exposes them as axes 2 and 4.

  Args:
    x: activations [shape=(batch, height, width, channels)].
    pool: window (and stride) over (height, width).

  Returns:
    The windows [shape=(batch, height // ph, ph, width // pw, pw, channels)].
  """
  batch, height, width, channels = x.shape
  ph, pw = pool
  x = x[:, : (height // ph) * ph, : (width // pw) * pw]
  return x.reshape(batch, height // ph, ph, width // pw, pw, channels)


def max_pool(x: jax.Array, pool: tuple[int, int], *, impl: str = "fast") -> jax.Array:
  """Valid max pooling with stride equal to the window.

  Args:
    x: activations [shape=(batch, height, width, channels)].
    pool: window (and stride) over (height, width).
    impl: ``"fast"`` (reshape + max over :func:`pool_windows`) or ``"plain"``
      (``flax.linen.max_pool``). Both give the same values. Under autodiff they differ only
      where a window holds tied maxima (``"fast"`` splits the gradient between them,
      ``"plain"`` gives it to the first): the CNN differentiates only ``"plain"``.

  Returns:
    Pooled activations [shape=(batch, height // ph, width // pw, channels)].
  """
  ph, pw = pool
  window = (int(ph), int(pw))
  if impl == "fast":
    return pool_windows(x, window).max(axis=(2, 4))
  if impl == "plain":
    return nn.max_pool(x, window, strides=window, padding="VALID")
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
