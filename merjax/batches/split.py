"""Training batches of a split: resident on the devices (sharded) or streamed from the host.

One protocol for both modes: an object with ``len()`` (batches per epoch) and
``epoch(e) -> iterator of batches``, each batch a dict of global ``jax.Array`` with the split's
fields (``inputs``, ``label`` ...) plus ``mask`` (float32, 1 for real examples, 0 for the padding
of the last batch) and ``index`` (each row's example number in the split). Epoch ``e``'s order is
:func:`merjax.batches.loader.epoch_order` and the padding repeats the epoch's first example
(:func:`merjax.batches.loader.batch_index_table`), so for the same seed both modes yield the
same batches, and a one-process run the same global batches as a multi-process one.

* :class:`DeviceBatches` (resident): the split is stored once, **sharded** along ``data``
  (``NamedSharding(mesh, P("data"))`` on the example axis, zero-padded to a multiple of the
  device count), so each device holds ``1/n`` of it. Every step gathers the global batch on
  the devices (each device takes the batch's rows it holds, a reduce-scatter hands every
  device its slice of the batch): no host work beyond the dispatch, no host-device transfer
  inside the epoch (``fit`` runs under ``jax.transfer_guard("disallow")``). Each process reads
  only the rows of its own devices.
* :class:`StreamedBatches` (streamed): grain reads, in each process, only that process's rows
  of every global batch (:func:`merjax.parallel.process_rows`, the rows that
  ``make_array_from_process_local_data`` puts on its devices), with read-ahead threads, and
  :func:`merjax.parallel.prefetch_to_mesh` keeps two batches in flight to the devices.
* :func:`split_batches` picks resident when the split's share per device fits the device
  memory budget (``--device-memory-gb``; default :func:`device_memory_budget`), the same
  decision on every process, and streams otherwise.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from merjax import parallel
from merjax.batches.loader import (
  GlobalBatchSampler,
  Loader,
  as_source,
  batch_index_table,
  epoch_order,
  gather,
)
from merjax.errors import MerjaxError

__all__ = ["DeviceBatches", "StreamedBatches", "batch_index_table",
           "device_memory_budget", "memory_budget", "nbytes", "split_batches"]

Transform = Callable[[dict], dict]

# The resident split's share per device when the platform reports no device memory (CPU):
# this fraction of the host's available RAM, divided among the process's devices (they share it).
HOST_MEMORY_FRACTION = 0.8


@functools.cache
def _sharded_gather(mesh: Mesh, block_rows: int):
  """Gathers a global batch from a split sharded along ``data`` (``block_rows`` per device)."""
  axis = parallel.DATA_AXIS
  devices = parallel.data_size(mesh)

  def local(arrays, rows, index, mask):
    # Every device sees the whole row list; it contributes the rows it holds (zeros for the
    # others), and the reduce-scatter sums exactly one non-zero term per element into the
    # device that owns that batch slot.
    me = lax.axis_index(axis)
    offset = rows - me * block_rows
    mine = (offset >= 0) & (offset < block_rows)
    safe = jnp.clip(offset, 0, block_rows - 1)
    batch = {}
    for key, value in arrays.items():
      rows = jnp.take(value, safe, axis=0)
      rows = jnp.where(mine.reshape((-1,) + (1,) * (value.ndim - 1)), rows,
                       jnp.zeros((), value.dtype))
      summed = rows.astype(jnp.uint8) if rows.dtype == jnp.bool_ else rows  # no bool psum
      batch[key] = lax.psum_scatter(summed, axis, scatter_dimension=0,
                                    tiled=True).astype(rows.dtype)
    per_device = rows.shape[0] // devices
    batch["mask"] = lax.dynamic_slice_in_dim(mask, me * per_device, per_device)
    batch["index"] = lax.dynamic_slice_in_dim(index, me * per_device, per_device)
    return batch

  return jax.jit(jax.shard_map(local, mesh=mesh, in_specs=(P(axis), P(), P(), P()),
                               out_specs=P(axis)))


def nbytes(arrays: Mapping[str, Any]) -> int:
  """Total size of a dict of (numpy or jax) arrays in bytes."""
  return int(sum(v.nbytes if hasattr(v, "nbytes") else np.asarray(v).nbytes
                 for v in arrays.values()))


def device_memory_budget(*, fraction: float = 0.8, device=None) -> int | None:
  """The bytes per device a resident split may take by default.

  Accelerators: ``fraction`` of what the device's ``memory_stats()`` reports free
  (``bytes_limit - bytes_in_use``). CPU devices report no stats: ``HOST_MEMORY_FRACTION``
  of the host's available RAM divided by this process's device count (they share the RAM).

  Returns:
    The budget, or None where the platform reports neither.
  """
  device = device or jax.local_devices()[0]
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "bytes_limit" in stats:
    return int(fraction * (stats["bytes_limit"] - stats.get("bytes_in_use", 0)))
  try:
    available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
  except (ValueError, OSError, AttributeError):
    return None
  return int(HOST_MEMORY_FRACTION * available / max(1, jax.local_device_count()))


def memory_budget(device_memory_gb: float | None = None) -> int | None:
  """Bytes per device for a resident split: ``device_memory_gb`` GiB, or the default.

  Raises:
    MerjaxError: a negative or non-finite ``device_memory_gb``.
  """
  if device_memory_gb is None:
    return device_memory_budget()
  if not 0 <= float(device_memory_gb) < float("inf"):
    raise MerjaxError(f"--device-memory-gb must be a non-negative number, got {device_memory_gb}")
  return int(float(device_memory_gb) * 2**30)


def _split_size(arrays: Mapping[str, Any]) -> int:
  sizes = {key: len(value) for key, value in arrays.items()}
  if not sizes or len(set(sizes.values())) != 1:
    raise MerjaxError(f"need one or more arrays of the same length, got lengths {sizes}")
  return next(iter(sizes.values()))


def _read(source, ids: np.ndarray, transform: Transform | None) -> dict[str, np.ndarray]:
  batch = gather(source, ids)
  batch = transform(batch) if transform is not None else batch
  return {key: np.asarray(value) for key, value in batch.items()}


def _resident_rows(size: int, mesh: Mesh) -> int:
  """Examples each device stores: its padded share of the split."""
  return parallel.round_up(size, parallel.data_size(mesh)) // parallel.data_size(mesh)


def _is_on_device(data) -> bool:
  return isinstance(data, Mapping) and any(isinstance(v, jax.Array) for v in data.values())


def _example_bytes(data, *, indices: np.ndarray, transform: Transform | None,
                   mesh: Mesh) -> int:
  """Bytes of one (transformed) example; a source is probed with one row of this process's own."""
  if isinstance(data, Mapping) and (transform is None or _is_on_device(data)):
    return -(-nbytes(data) // max(1, _split_size(data)))
  padded = parallel.round_up(len(indices), parallel.data_size(mesh))
  first = parallel.process_rows(mesh, padded).start
  return nbytes(_read(as_source(data), indices[min(first, len(indices) - 1):][:1], transform))


def _all_processes_agree(flag: bool) -> bool:
  """True when ``flag`` holds on every process (a collective in multi-process runs)."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils
  return bool(np.all(multihost_utils.process_allgather(np.int32(flag))))


class DeviceBatches:
  """Batches of a split kept on the devices (resident).

  On a mesh each step runs one jitted gather: every device takes the batch's rows it stores
  (zeros elsewhere) and a reduce-scatter over ``data`` leaves each device its slice of the
  global batch. Each sum has exactly one non-zero term, so the batch is bit-exact; the cost
  is one global batch of scratch per device and a reduce-scatter of one global batch.

  Args:
    arrays: ``{"inputs": [shape=(n, ...)], "label": [shape=(n,)], ...}`` (numpy or, in a
      one-process run, jax arrays), or any random-access source (``len``/``[i]``, e.g. a
      :class:`~merjax.data.store.PreparedDataset`).
    batch_size: examples per (global) batch.
    shuffle: draw a new order every epoch (training) or keep the stored order (evaluation).
    seed: the shuffling seed; epoch ``e`` uses :func:`merjax.batches.loader.epoch_order`.
    mesh: the data mesh: the split is stored sharded along ``data`` (zero rows pad it to a
      multiple of the device count; they are never gathered) and batches come sharded along
      ``data`` (``batch_size`` must divide across the devices, else MerjaxError). Each process
      reads only the rows its devices store.
    memory_budget_bytes: refuse (MerjaxError) a split whose share per device exceeds this;
      default :func:`device_memory_budget`. :func:`split_batches` streams such splits.
    indices: which of the source's examples form the split (all by default).
    transform: ``batch -> batch`` applied to the rows read from a source (e.g.
      :func:`merjax.batches.loader.pcm_to_float`).
    example_nbytes: bytes of one (transformed) example, for the budget check; by default
      measured (a source is probed with one of this process's rows).
    repeats: each epoch covers the stored rows this many times: example ``j`` of
      ``rows * repeats`` is stored row ``j % rows`` (e.g. variant ``j // rows`` of clip
      ``j % rows`` for augmentation drawn on the device), stored once.

  Yields (from :meth:`epoch`) dicts of the split's fields plus ``mask`` and ``index`` (the
  example's number in the split, ``0 .. rows * repeats - 1``).
  """

  def __init__(self, arrays, *, batch_size: int, shuffle: bool, mesh: Mesh, seed: int = 0,
               memory_budget_bytes: int | None = None,
               indices: Sequence[int] | None = None, transform: Transform | None = None,
               example_nbytes: int | None = None, repeats: int = 1):
    on_device = _is_on_device(arrays)
    if isinstance(arrays, Mapping):
      _split_size(arrays)
    source = arrays if on_device else as_source(arrays)
    n_source = _split_size(arrays) if on_device else len(source)
    ids = np.arange(n_source) if indices is None else np.asarray(indices, np.int64)
    if repeats < 1:
      raise MerjaxError(f"repeats must be at least 1, got {repeats}")
    self.rows = len(ids)
    self.size = self.rows * int(repeats)
    self.batch_size = int(batch_size)
    if self.size <= 0:
      raise MerjaxError(f"cannot batch an empty split (n={self.size})")
    parallel.check_batch_size(self.batch_size, mesh)
    budget = memory_budget_bytes if memory_budget_bytes is not None else device_memory_budget()
    if budget is not None:
      example = example_nbytes or _example_bytes(arrays, indices=ids, transform=transform,
                                                 mesh=mesh)
      per_device = _resident_rows(self.rows, mesh) * example
      if per_device > budget:
        raise MerjaxError(f"the split needs {per_device / 2**30:.2f} GiB per device but the "
                          f"budget is {budget / 2**30:.2f} GiB; stream it "
                          "(merjax.batches.split.split_batches does when it does not fit)")
    self.shuffle, self.seed, self.mesh = shuffle, seed, mesh
    if on_device:
      if indices is not None or transform is not None:
        raise MerjaxError("indices and transform apply to host data, not to jax arrays")
      self.arrays = self._put_device_arrays(arrays, mesh)
    else:
      self.arrays = self._put_sharded(source, ids, transform, mesh)

  @staticmethod
  def _put_device_arrays(arrays, mesh):
    if jax.process_count() > 1:
      raise MerjaxError("a multi-process split must come as host arrays or a source, each "
                        "process reading its rows")
    size = _split_size(arrays)
    pad = parallel.round_up(size, parallel.data_size(mesh)) - size
    target = parallel.data_sharding(mesh)
    out = {}
    for key, value in arrays.items():
      lib = jnp if isinstance(value, jax.Array) else np
      value = lib.pad(value, [(0, pad)] + [(0, 0)] * (value.ndim - 1)) if pad else value
      out[key] = jax.device_put(value, target)
    return out

  @staticmethod
  def _put_sharded(source, ids: np.ndarray, transform, mesh: Mesh) -> dict[str, jax.Array]:
    """Reads only this process's devices' rows and assembles the sharded global arrays."""
    size = len(ids)
    padded = parallel.round_up(size, parallel.data_size(mesh))
    sharding = parallel.data_sharding(mesh)
    spans = {device: parallel.shard_rows(index, padded)
             for device, index in sharding.addressable_devices_indices_map((padded,)).items()}
    blocks = {}
    for start, stop in sorted(set(spans.values())):
      real = ids[start:min(stop, size)]
      # A block of padding only (a split smaller than the devices) still needs the fields'
      # shapes: they come from the split's first example.
      rows = (_read(source, real, transform) if len(real)
              else {k: v[:0] for k, v in _read(source, ids[:1], transform).items()})
      blocks[(start, stop)] = {key: np.concatenate(
          [value, np.zeros((stop - start - len(value), *value.shape[1:]), value.dtype)])
          for key, value in rows.items()}
    first = next(iter(blocks.values()))
    return {key: jax.make_array_from_single_device_arrays(
        (padded, *first[key].shape[1:]), sharding,
        [jax.device_put(blocks[span][key], device) for device, span in spans.items()])
        for key in first}

  @staticmethod
  def fits(arrays: Mapping[str, np.ndarray], *, mesh: Mesh,
           memory_budget_bytes: int | None = None) -> bool:
    """Whether ``arrays``' share per device fits the budget (default
    :func:`device_memory_budget`)."""
    budget = memory_budget_bytes if memory_budget_bytes is not None else device_memory_budget()
    size = _split_size(arrays)
    return budget is None or _resident_rows(size, mesh) * -(-nbytes(arrays) // size) <= budget

  def __len__(self) -> int:
    return -(-self.size // self.batch_size)

  def __iter__(self) -> Iterator[dict[str, jax.Array]]:
    return self.epoch(0)

  def order(self, epoch: int) -> np.ndarray:
    return epoch_order(self.size, shuffle=self.shuffle, seed=self.seed, epoch=epoch)

  def epoch(self, epoch: int = 0) -> Iterator[dict[str, jax.Array]]:
    """Yields the batches of one epoch, each with ``mask`` and ``index``.

    The epoch's index table goes to the devices in one explicit transfer; the steps then
    only dispatch.
    """
    index, mask = batch_index_table(self.size, self.batch_size, order=self.order(epoch))
    take = _sharded_gather(self.mesh, _resident_rows(self.rows, self.mesh))
    table = parallel.replicate((list(index % self.rows), list(index), list(mask)), self.mesh)
    for rows, row_index, row_mask in zip(*table):
      yield take(self.arrays, rows, row_index, row_mask)


class StreamedBatches:
  """Batches read from the host every epoch (streamed), in the same order as :class:`DeviceBatches`.

  Each process reads, with grain (read-ahead threads, optional worker processes), only its
  rows of every global batch (:class:`merjax.batches.loader.GlobalBatchSampler` with
  :func:`merjax.parallel.process_rows`), and ``prefetch`` batches are assembled on the
  devices ahead of the step (``jax.make_array_from_process_local_data``).

  Args:
    source: a dict of arrays or a random-access source (e.g. a prepared store).
    batch_size: examples per global batch (must divide across the mesh's devices).
    shuffle: draw a new order every epoch.
    seed: the shuffling seed.
    mesh: the data mesh.
    indices: which of the source's examples form the split (all by default).
    transform: ``batch -> batch`` run on the host rows (in grain's threads or workers).
    prefetch: global batches in flight to the devices (at least 2 to overlap with the step).
    read_threads: grain threads reading ahead.
    worker_count: grain worker processes (0: read in this process's threads).
    num_epochs: the epochs :meth:`epoch` may reach (grain reads ahead up to their end);
      default unbounded.
    repeats: as :class:`DeviceBatches`: example ``j`` reads row ``j % rows``.

  Yields (from :meth:`epoch`) global batches with ``mask`` and ``index`` (the example's number
  in the split).
  """

  def __init__(self, source, *, batch_size: int, shuffle: bool, mesh: Mesh, seed: int = 0,
               indices: Sequence[int] | None = None,
               transform: Transform | None = None, prefetch: int = 2, read_threads: int = 4,
               worker_count: int = 0, num_epochs: int | None = None, repeats: int = 1):
    source = as_source(source)
    if repeats < 1:
      raise MerjaxError(f"repeats must be at least 1, got {repeats}")
    ids = np.arange(len(source)) if indices is None else np.asarray(indices, np.int64)
    examples = np.tile(ids, int(repeats))
    self.size = len(examples)
    self.batch_size, self.shuffle, self.seed = int(batch_size), shuffle, seed
    self.mesh, self.prefetch = mesh, prefetch
    rows = parallel.process_rows(mesh, self.batch_size)
    self.sampler = GlobalBatchSampler(self.size, self.batch_size, rows=rows, seed=seed,
                                      shuffle=shuffle)
    self.loader = Loader(source, indices=examples, transform=transform, sampler=self.sampler,
                         read_threads=read_threads, worker_count=worker_count,
                         num_epochs=num_epochs, index="position")

  def __len__(self) -> int:
    return len(self.sampler)

  def __iter__(self) -> Iterator[dict[str, jax.Array]]:
    return self.epoch(0)

  def epoch(self, epoch: int = 0) -> Iterator[dict[str, jax.Array]]:
    """Yields the global batches of one epoch, each with ``mask`` and ``index``."""
    return parallel.prefetch_to_mesh(self.loader.epoch(epoch), self.mesh, size=self.prefetch)

  def close(self) -> None:
    """Stops grain's workers, if any."""
    self.loader.close()


def _human(nbytes_: int) -> str:
  return f"{nbytes_ / 2**30:.2f} GiB" if nbytes_ >= 2**30 else f"{nbytes_ / 2**20:.1f} MiB"


def split_batches(data, *, batch_size: int, shuffle: bool, mesh: Mesh, seed: int = 0,
                  indices: Sequence[int] | None = None, transform: Transform | None = None,
                  device_memory_gb: float | None = None, memory_budget_bytes: int | None = None,
                  example_nbytes: int | None = None, repeats: int = 1,
                  log: Callable[[str], Any] | None = None) -> DeviceBatches | StreamedBatches:
  """The batches of one split: resident when its share per device fits, streamed otherwise.

  Args:
    data: a dict of arrays ``{"inputs": [shape=(n, ...)], "label": [shape=(n,)], ...}`` or a
      random-access source (e.g. a :class:`~merjax.data.store.PreparedDataset`).
    batch_size: examples per global batch (a multiple of the mesh's device count).
    shuffle: draw a new order every epoch (training) or keep the order (evaluation).
    seed: the shuffling seed (both modes: :func:`merjax.batches.loader.epoch_order`).
    mesh: the data mesh.
    indices: which of the source's examples form the split (all by default).
    transform: ``batch -> batch`` on the rows read (e.g. int16 PCM to float).
    device_memory_gb: GiB per device a resident split may take (``--device-memory-gb``);
      default :func:`device_memory_budget`.
    memory_budget_bytes: the same in bytes (wins over ``device_memory_gb``).
    example_nbytes: bytes of one (transformed) example; by default measured (a source is
      probed with one row of this process's resident share).
    repeats: each epoch covers the rows this many times (see :class:`DeviceBatches`); the
      rows are stored (or read) once per repeat, never copied.
    log: told which mode was chosen.

  Returns:
    :class:`DeviceBatches` or :class:`StreamedBatches`, both ``epoch(e) -> batches``. The
    choice is the same on every process (it resides only where it fits everywhere).
  """
  budget = memory_budget_bytes if memory_budget_bytes is not None else memory_budget(
      device_memory_gb)
  size = (_split_size(data) if _is_on_device(data) else len(as_source(data))) if (
      indices is None) else len(indices)
  ids = np.arange(size) if indices is None else np.asarray(indices, np.int64)
  example = example_nbytes or _example_bytes(data, indices=ids, transform=transform, mesh=mesh)
  need = _resident_rows(size, mesh) * example
  resident = _all_processes_agree(budget is None or need <= budget)
  if log is not None:
    limit = "no limit known" if budget is None else f"budget {_human(budget)}"
    log(f"{size * repeats} examples, {_human(need)} per device ({limit}): "
        + ("resident on the devices" if resident else "streamed from the host"))
  if resident:
    return DeviceBatches(data, batch_size=batch_size, shuffle=shuffle, seed=seed, mesh=mesh,
                         memory_budget_bytes=need, example_nbytes=example, indices=indices,
                         transform=transform, repeats=repeats)
  return StreamedBatches(data, batch_size=batch_size, shuffle=shuffle, seed=seed, mesh=mesh,
                         indices=indices, transform=transform, repeats=repeats)
