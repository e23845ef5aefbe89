"""Dropout whose mask is bit-identical to ``flax.linen.Dropout``, generated faster on CPU.

``flax.linen.Dropout`` draws its mask with ``jax.random.bernoulli``, i.e. the Threefry-2x32
hash of every element's index. On CPU, JAX lowers that hash as a rolled loop: each of its
five iterations writes two arrays as large as the activations, so after the first conv
block (32 x 936 x 126 x 32 values) the mask costs more than the convolution. Here the same
hash is written with its 20 rounds unrolled, so XLA emits one vectorised elementwise loop
and fuses it into the consumer. The bits, hence the mask and the outputs, equal Flax's
exactly (tested); the slow path is used where that equality is not guaranteed (another key
implementation, or ``jax_threefry_partitionable`` off).

References:
  Salmon et al., "Parallel random numbers: as easy as 1, 2, 3", SC 2011 (Threefry).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

_ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))
_PARITY = np.uint32(0x1BD11BDA)


def _rotate_left(x: jax.Array, r: int) -> jax.Array:
  return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def fast_bits_supported(key: jax.Array) -> bool:
  """Whether :func:`threefry_bits` reproduces ``jax.random.bits(key, shape)``."""
  # jax.config's flags are attributes set at run time, unknown to the type checker.
  if not jax.config.jax_threefry_partitionable:  # type: ignore[attr-defined]
    return False
  if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
    return key.shape == () and str(jax.random.key_impl(key)) == "threefry2x32"
  # A raw uint32[2] key has the configured default implementation.
  return (key.shape == (2,) and key.dtype == jnp.uint32
          and str(jax.random.key_impl(key)) == "threefry2x32")


def threefry_bits(key: jax.Array, shape: tuple[int, ...]) -> jax.Array:
  """``jax.random.bits(key, shape)`` (uint32) for a Threefry key, as one fusible loop.

  Element ``i`` (row-major) is ``hi ^ lo`` of Threefry-2x32 applied to the counter
  ``(0, i)``: JAX's partitionable scheme for arrays of fewer than 2**32 elements.

  Args:
    key: a Threefry-2x32 key (typed or raw ``uint32[2]``).
    shape: output shape.

  Returns:
    Random bits [shape=shape] of dtype uint32.
  """
  if math.prod(shape) >= 2**32:
    raise ValueError(f"threefry_bits supports fewer than 2**32 elements, got shape {shape}")
  data = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
  k0, k1 = data[0], data[1]
  ks = (k0, k1, k0 ^ k1 ^ _PARITY)
  counter = jax.lax.iota(np.uint32, math.prod(shape)).reshape(shape)
  x0 = jnp.broadcast_to(ks[0], shape)  # the counter's high word is 0
  x1 = counter + ks[1]
  for block in range(5):
    for r in _ROTATIONS[block % 2]:
      x0 = x0 + x1
      x1 = x0 ^ _rotate_left(x1, r)
    x0 = x0 + ks[(block + 1) % 3]
    x1 = x1 + ks[(block + 2) % 3] + np.uint32(block + 1)
  return x0 ^ x1


def bernoulli(key: jax.Array, p: float, shape: tuple[int, ...]) -> jax.Array:
  """``jax.random.bernoulli(key, p, shape)`` (float32 ``p``), bit-identical, fusible on CPU."""
  if not fast_bits_supported(key) or math.prod(shape) >= 2**32:
    return jax.random.bernoulli(key, p, shape)
  bits = threefry_bits(key, shape)
  # jax.random.uniform: 23 random mantissa bits under exponent 0 give [1, 2), minus 1.
  one = np.array(1.0, np.float32).view(np.uint32)
  uniform = jax.lax.bitcast_convert_type((bits >> np.uint32(9)) | one, jnp.float32) - 1.0
  return uniform < jnp.float32(p)


class Dropout(nn.Dropout):
  """``flax.linen.Dropout`` with the mask drawn by :func:`bernoulli`.

  Give it the name Flax would give a ``nn.Dropout`` at the same place (``Dropout_0``, ...):
  the dropout key is derived from the module path, so equal names give equal masks.
  """

  @nn.compact
  def __call__(self, inputs, deterministic: bool | None = None, rng: jax.Array | None = None):
    deterministic = nn.merge_param("deterministic", self.deterministic, deterministic)
    if self.rate == 0.0 or deterministic:
      return inputs
    if self.rate == 1.0:
      return jnp.zeros_like(inputs)
    keep_prob = 1.0 - self.rate
    if rng is None:
      rng = self.make_rng(self.rng_collection)
    shape = tuple(1 if d in self.broadcast_dims else n for d, n in enumerate(inputs.shape))
    mask = jnp.broadcast_to(bernoulli(rng, keep_prob, shape), inputs.shape)
    return jax.lax.select(mask, inputs / keep_prob, jnp.zeros_like(inputs))
