"""Device-resident batches: a whole split lives on the accelerator, batches are sliced there.

Every batch has the same shape: the last one is padded and carries ``mask == 0`` for the
padding, so each example counts exactly once and one compiled step serves the whole epoch.

On a data mesh (:mod:`merjax.parallel`) the split is replicated on every device and each
device gathers only its own slice of every global batch, so the batch arrives sharded along
``data`` without a host round trip; in a multi-host run every process holds the split and
materialises only its devices' rows.
"""

from __future__ import annotations

import functools
from typing import Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from merjax import parallel


@functools.partial(jax.jit, static_argnames=())
def _gather(arrays: dict, indices: jax.Array) -> dict:
  return {key: jnp.take(value, indices, axis=0) for key, value in arrays.items()}


@functools.lru_cache(maxsize=None)
def _mesh_gather(mesh: Mesh):
  spec = P(parallel.DATA_AXIS)

  def local(arrays, indices, mask):
    batch = {key: jnp.take(value, indices, axis=0) for key, value in arrays.items()}
    batch["mask"] = mask
    return batch

  gather = jax.shard_map(local, mesh=mesh, in_specs=(P(), spec, spec), out_specs=spec)
  # The row is picked inside the jit so one dispatch yields one sharded batch.
  return jax.jit(lambda arrays, indices, mask, row: gather(arrays, indices[row], mask[row]))


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


def epoch_order(size: int, *, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
  """The example order of one epoch: a pure function of ``(seed, epoch)`` (exact resume)."""
  if not shuffle:
    return np.arange(size)
  return np.asarray(jax.random.permutation(
      jax.random.fold_in(jax.random.key(seed), epoch), size))


def _split_size(arrays: Mapping[str, np.ndarray]) -> int:
  sizes = {key: len(value) for key, value in arrays.items()}
  if len(set(sizes.values())) != 1:
    raise ValueError(f"arrays of different lengths: {sizes}")
  return next(iter(sizes.values()))


class DeviceBatches:
  """Batches of a split kept on the device.

  Args:
    arrays: ``{"inputs": [shape=(n, ...)], "label": [shape=(n,)], ...}``, numpy or jax.
    batch_size: examples per batch.
    shuffle: draw a new order every epoch (training) or keep the stored order (evaluation).
    seed: the shuffling seed; epoch ``e`` uses ``fold_in(key(seed), e)``.
    sharding: optional sharding for the stored arrays (single-device path only).
    mesh: a data mesh: batches come sharded along ``data`` (``batch_size`` must divide
      across its devices, else MerjaxError). In a multi-host run every process passes the
      same split.
  """

  def __init__(self, arrays: Mapping[str, np.ndarray], *, batch_size: int, shuffle: bool,
               seed: int = 0, sharding=None, mesh: Mesh | None = None):
    self.size = _split_size(arrays)
    self.batch_size = int(batch_size)
    self.shuffle = shuffle
    self.seed = seed
    self.mesh = mesh
    if mesh is not None:
      parallel.check_batch_size(self.batch_size, mesh)
      self.arrays = parallel.replicate(dict(arrays), mesh)
    else:
      self.arrays = {key: jax.device_put(value, sharding) for key, value in arrays.items()}

  def __len__(self) -> int:
    return -(-self.size // self.batch_size)

  def order(self, epoch: int) -> np.ndarray:
    return epoch_order(self.size, shuffle=self.shuffle, seed=self.seed, epoch=epoch)

  def epoch(self, epoch: int = 0) -> Iterator[dict[str, jax.Array]]:
    """Yields the batches of one epoch, each with a float ``mask``."""
    indices, mask = batch_index_table(self.size, self.batch_size, order=self.order(epoch))
    if self.mesh is not None:
      gather = _mesh_gather(self.mesh)
      indices, mask = parallel.replicate((indices, mask), self.mesh)
      for row in range(indices.shape[0]):
        yield gather(self.arrays, indices, mask, row)
      return
    indices, mask = jax.device_put(indices), jax.device_put(mask)
    for row in range(indices.shape[0]):
      batch = _gather(self.arrays, indices[row])
      batch["mask"] = mask[row]
      yield batch


class HostBatches:
  """Batches of a split kept in host memory; each process yields its rows of each batch.

  For splits that do not fit on the device, and the host-fed form of a multi-host run: with
  ``P`` processes every yielded batch holds rows :func:`merjax.parallel.process_batch_slice`
  of the global batch, and :func:`merjax.train.fit` (with a ``mesh``) assembles the global
  array with ``jax.make_array_from_process_local_data``. Order and padding equal those of
  :class:`DeviceBatches` with the same seed, so both feed the same run.

  Args:
    arrays: ``{"inputs": [shape=(n, ...)], "label": [shape=(n,)], ...}`` (numpy); every
      process passes the whole split.
    batch_size: examples per global batch.
    shuffle: draw a new order every epoch.
    seed: the shuffling seed (as :class:`DeviceBatches`).
  """

  def __init__(self, arrays: Mapping[str, np.ndarray], *, batch_size: int, shuffle: bool,
               seed: int = 0):
    self.size = _split_size(arrays)
    self.arrays = {key: np.asarray(value) for key, value in arrays.items()}
    self.batch_size = int(batch_size)
    self.rows = parallel.process_batch_slice(self.batch_size)
    self.shuffle = shuffle
    self.seed = seed

  def __len__(self) -> int:
    return -(-self.size // self.batch_size)

  def epoch(self, epoch: int = 0) -> Iterator[dict[str, np.ndarray]]:
    """Yields this process's part of every batch of one epoch, each with a float ``mask``."""
    order = epoch_order(self.size, shuffle=self.shuffle, seed=self.seed, epoch=epoch)
    indices, mask = batch_index_table(self.size, self.batch_size, order=order)
    for row_indices, row_mask in zip(indices[:, self.rows], mask[:, self.rows]):
      batch = {key: value[row_indices] for key, value in self.arrays.items()}
      batch["mask"] = row_mask
      yield batch
