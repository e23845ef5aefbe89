"""Device-resident batches: a whole split lives on the accelerator, batches are sliced there.

Every batch has the same shape: the last one is padded and carries ``mask == 0`` for the
padding, so each example counts exactly once and one compiled step serves the whole epoch.
"""

from __future__ import annotations

import functools
from typing import Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np


@functools.partial(jax.jit, static_argnames=())
def _gather(arrays: dict, indices: jax.Array) -> dict:
  return {key: jnp.take(value, indices, axis=0) for key, value in arrays.items()}


def batch_index_table(n: int, batch_size: int, *, order: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Index rows and masks covering ``n`` examples once, padded to whole batches.

  Args:
    n: number of examples.
    batch_size: examples per batch.
    order: optional permutation of ``range(n)``.

  Returns:
    ``(indices, mask)``, both [shape=(ceil(n / batch_size), batch_size)]; padded slots hold
    index 0 and mask 0.
  """
  if n <= 0:
    raise ValueError(f"cannot batch an empty split (n={n})")
  order = np.arange(n) if order is None else np.asarray(order)
  n_batches = -(-n // batch_size)
  indices = np.zeros(n_batches * batch_size, np.int32)
  mask = np.zeros(n_batches * batch_size, np.float32)
  indices[:n], mask[:n] = order, 1.0
  return indices.reshape(n_batches, batch_size), mask.reshape(n_batches, batch_size)


class DeviceBatches:
  """Batches of a split kept on the device.

  Args:
    arrays: ``{"inputs": [shape=(n, ...)], "label": [shape=(n,)], ...}``, numpy or jax.
    batch_size: examples per batch.
    shuffle: draw a new order every epoch (training) or keep the stored order (evaluation).
    seed: the shuffling seed; epoch ``e`` uses ``fold_in(key(seed), e)``.
    sharding: optional sharding for the stored arrays (e.g. replicated on a mesh).
  """

  def __init__(self, arrays: Mapping[str, np.ndarray], *, batch_size: int, shuffle: bool,
               seed: int = 0, sharding=None):
    sizes = {key: len(value) for key, value in arrays.items()}
    if len(set(sizes.values())) != 1:
      raise ValueError(f"arrays of different lengths: {sizes}")
    self.size = next(iter(sizes.values()))
    self.batch_size = int(batch_size)
    self.shuffle = shuffle
    self.seed = seed
    self.arrays = {key: jax.device_put(value, sharding) for key, value in arrays.items()}

  def __len__(self) -> int:
    return -(-self.size // self.batch_size)

  def order(self, epoch: int) -> np.ndarray:
    if not self.shuffle:
      return np.arange(self.size)
    return np.asarray(jax.random.permutation(
        jax.random.fold_in(jax.random.key(self.seed), epoch), self.size))

  def epoch(self, epoch: int = 0) -> Iterator[dict[str, jax.Array]]:
    """Yields the batches of one epoch, each with a float ``mask``."""
    indices, mask = batch_index_table(self.size, self.batch_size, order=self.order(epoch))
    indices, mask = jax.device_put(indices), jax.device_put(mask)
    for row in range(indices.shape[0]):
      batch = _gather(self.arrays, indices[row])
      batch["mask"] = mask[row]
      yield batch
