"""Device-resident batches: a whole split lives on the accelerator, batches are sliced there.

Every batch has the same shape: the last one is padded (with the epoch's first example) and
carries ``mask == 0`` for the padding, so each example counts exactly once and one compiled step
serves the whole epoch. Order and padding are those of :class:`merjax.data.pipeline.Loader`
(:func:`merjax.data.pipeline.epoch_order`), so on one host both yield the same batches.

On a data mesh (:mod:`merjax.parallel`) the split is replicated on every device and each
device gathers only its own slice of every global batch, so the batch arrives sharded along
``data`` without a host round trip; in a multi-host run every process holds the split and
materialises only its devices' rows.
"""

from __future__ import annotations

import functools
import os
from typing import Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, PartitionSpec as P

from merjax import parallel
from merjax.data.pipeline import epoch_order
from merjax.errors import MerjaxError


def _take(arrays: dict, indices: jax.Array, mask: jax.Array) -> dict:
  batch = {key: jnp.take(value, indices, axis=0) for key, value in arrays.items()}
  batch["mask"], batch["index"] = mask, indices
  return batch


# The row is picked inside the jit, so one dispatch yields one batch.
_gather = jax.jit(lambda arrays, indices, mask, row: _take(arrays, indices[row], mask[row]))


@functools.lru_cache(maxsize=None)
def _mesh_gather(mesh: Mesh):
  spec = P(parallel.DATA_AXIS)

  gather = jax.shard_map(_take, mesh=mesh, in_specs=(P(), spec, spec), out_specs=spec)
  return jax.jit(lambda arrays, indices, mask, row: gather(arrays, indices[row], mask[row]))


def batch_index_table(n: int, batch_size: int, *, order: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Index rows and masks covering ``n`` examples once, padded to whole batches.

  Args:
    n: number of examples.
    batch_size: examples per batch.
    order: optional permutation of ``range(n)``.

  Returns:
    ``(indices, mask)``, both [shape=(ceil(n / batch_size), batch_size)]; padded slots repeat
    the order's first example, with mask 0.
  """
  if n <= 0:
    raise MerjaxError(f"cannot batch an empty split (n={n})")
  if batch_size <= 0:
    raise MerjaxError(f"batch_size must be positive, got {batch_size}")
  order = np.arange(n) if order is None else np.asarray(order)
  n_batches = -(-n // batch_size)
  indices = np.full(n_batches * batch_size, order[0], np.int32)
  mask = np.zeros(n_batches * batch_size, np.float32)
  indices[:n], mask[:n] = order, 1.0
  return indices.reshape(n_batches, batch_size), mask.reshape(n_batches, batch_size)


def nbytes(arrays: Mapping[str, np.ndarray]) -> int:
  """Total size of a dict of (numpy or jax) arrays in bytes."""
  return int(sum(v.nbytes if hasattr(v, "nbytes") else np.asarray(v).nbytes
                 for v in arrays.values()))


def device_memory_budget(*, fraction: float = 0.8, device=None) -> int | None:
  """``fraction`` of the device's free memory (of free host RAM for CPU devices), in bytes.

  Returns:
    The budget, or None where the platform reports neither.
  """
  device = device or jax.local_devices()[0]
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "bytes_limit" in stats:
    return int(fraction * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
  try:
    return int(fraction * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))
  except (ValueError, OSError, AttributeError):
    return None


def _budget(memory_budget_bytes: int | None) -> int | None:
  return device_memory_budget() if memory_budget_bytes is None else memory_budget_bytes


def _split_size(arrays: Mapping[str, np.ndarray]) -> int:
  sizes = {key: len(value) for key, value in arrays.items()}
  if len(set(sizes.values())) != 1:
    raise MerjaxError(f"need one or more arrays of the same length, got lengths {sizes}")
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
    memory_budget_bytes: refuse (MerjaxError) a split larger than this, per device; default
      :func:`device_memory_budget`. Larger splits stream with
      :class:`merjax.data.pipeline.Loader`.

  Yields (from :meth:`epoch`) dicts of the split's fields plus ``mask`` (float32, 1 for real
  examples) and ``index`` (each row's example index).
  """

  def __init__(self, arrays: Mapping[str, np.ndarray], *, batch_size: int, shuffle: bool,
               seed: int = 0, sharding=None, mesh: Mesh | None = None,
               memory_budget_bytes: int | None = None):
    self.size = _split_size(arrays)
    budget = _budget(memory_budget_bytes)
    if budget is not None and nbytes(arrays) > budget:
      raise MerjaxError(f"the split needs {nbytes(arrays) / 2**30:.2f} GiB per device but the "
                        f"budget is {budget / 2**30:.2f} GiB; stream it with "
                        "merjax.data.pipeline.Loader")
    self.batch_size = int(batch_size)
    self.shuffle = shuffle
    self.seed = seed
    self.mesh = mesh
    if mesh is not None:
      parallel.check_batch_size(self.batch_size, mesh)
      self.arrays = parallel.replicate(dict(arrays), mesh)
    else:
      self.arrays = {key: jax.device_put(value, sharding) for key, value in arrays.items()}

  @staticmethod
  def fits(arrays: Mapping[str, np.ndarray], *, memory_budget_bytes: int | None = None) -> bool:
    """Whether ``arrays`` fit the budget (default :func:`device_memory_budget`)."""
    budget = _budget(memory_budget_bytes)
    return budget is None or nbytes(arrays) <= budget

  def __len__(self) -> int:
    return -(-self.size // self.batch_size)

  def __iter__(self) -> Iterator[dict[str, jax.Array]]:
    return self.epoch(0)

  def order(self, epoch: int) -> np.ndarray:
    return epoch_order(self.size, shuffle=self.shuffle, seed=self.seed, epoch=epoch)

  def epoch(self, epoch: int = 0) -> Iterator[dict[str, jax.Array]]:
    """Yields the batches of one epoch, each with ``mask`` and ``index``."""
    indices, mask = batch_index_table(self.size, self.batch_size, order=self.order(epoch))
    if self.mesh is not None:
      gather = _mesh_gather(self.mesh)
      indices, mask = parallel.replicate((indices, mask), self.mesh)
    else:
      gather = _gather
      indices, mask = jax.device_put(indices), jax.device_put(mask)
    # Explicit transfers of the row numbers: the loop runs under transfer_guard("disallow").
    rows = list(np.arange(indices.shape[0], dtype=np.int32))
    rows = jax.device_put(rows) if self.mesh is None else parallel.replicate(rows, self.mesh)
    for row in rows:
      yield gather(self.arrays, indices, mask, row)


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
      batch["mask"], batch["index"] = row_mask, row_indices
      yield batch
