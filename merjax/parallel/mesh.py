"""Data parallelism over a one-axis device mesh: shardings, batch slices, prefetch.

One mesh axis, ``data``: every batch is split along it, while params, BatchNorm statistics
and the optimizer state are replicated. The training step is a plain ``jax.jit`` with these
shardings (:func:`merjax.train.steps.mesh_train_step`), not ``pmap``: XLA inserts the
gradient all-reduce, and a mean over the batch axis (BatchNorm's statistics, the loss) is a
mean over the *global* batch, so N devices compute what one device computes on the whole
batch.

The mesh uses ``AxisType.Auto`` (sharding propagated by the compiler): ``jax.make_mesh``
defaults to explicit axis types in this jax version, under which Flax Linen's ``Dropout``
(``lax.select`` between a replicated mask and sharded activations) fails to trace.

Multi-host: call :func:`merjax.parallel.cluster.initialize_distributed` before anything
touches a device; every process then builds the same global mesh and feeds its own rows of
each global batch (:func:`process_rows`); :func:`shard_batch` assembles the global array with
``jax.make_array_from_process_local_data``.
"""


from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from merjax.errors import MerjaxError

DATA_AXIS = "data"


def make_data_mesh(*, devices: int | Sequence[jax.Device] | None = None) -> Mesh:
  """A one-axis (``data``) mesh.

  Args:
    devices: a device count (the first ones of ``jax.devices()``), explicit devices, or
      ``None`` for every device of every process.

  Returns:
    A :class:`jax.sharding.Mesh` with one ``Auto`` axis named ``data``.
  """
  if devices is None:
    devices = jax.devices()
  elif isinstance(devices, int):
    available = jax.device_count()
    if not 1 <= devices <= available:
      raise MerjaxError(f"asked for {devices} devices, but {available} are available "
                        f"({jax.devices()[0].platform})")
    if jax.process_count() > 1 and devices != available:
      raise MerjaxError(f"a multi-host run trains on all {available} devices, not {devices}")
    devices = jax.devices()[:devices]
  devices = list(devices)
  return jax.make_mesh((len(devices),), (DATA_AXIS,), axis_types=(AxisType.Auto,),
                       devices=devices)


def resolve_mesh(mesh: Mesh | int | str = "auto") -> Mesh:
  """The mesh a training run uses (always one: a mesh of one device costs nothing).

  Args:
    mesh: ``"auto"`` (every device of every process), an int (that many devices), or a
      ready :class:`Mesh`.

  Returns:
    A data mesh.
  """
  if isinstance(mesh, Mesh):
    return mesh
  if isinstance(mesh, str):
    if mesh != "auto":
      raise MerjaxError(f"mesh must be 'auto', a device count or a Mesh, got {mesh!r}")
    return make_data_mesh()
  return make_data_mesh(devices=int(mesh))


def data_size(mesh: Mesh) -> int:
  return int(mesh.shape[DATA_AXIS])


def data_sharding(mesh: Mesh) -> NamedSharding:
  """Split along the leading (batch) axis over ``data``."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  """A full copy on every device of the mesh."""
  return NamedSharding(mesh, P())


def check_batch_size(batch_size: int, mesh: Mesh, *, what: str = "batch size") -> None:
  """Raises MerjaxError unless ``batch_size`` splits evenly over the ``data`` axis."""
  n = data_size(mesh)
  if batch_size % n:
    raise MerjaxError(
        f"{what} {batch_size} does not divide across the {n} devices of the data mesh; use a "
        f"multiple of {n} (e.g. --batch-size {round_up(batch_size, n)}) or fewer devices "
        "(--devices)")
  if batch_size % jax.process_count():
    raise MerjaxError(f"{what} {batch_size} does not divide across "
                      f"{jax.process_count()} processes")


def round_up(batch_size: int, multiple: int) -> int:
  """The smallest multiple of ``multiple`` that is at least ``batch_size``."""
  return -(-batch_size // multiple) * multiple


def replicate(tree: Any, mesh: Mesh) -> Any:
  """Copies a pytree (host or device arrays, PRNG keys) to every device of the mesh.

  In a multi-host run every process must pass the same values; each process fills only its
  own devices (no cross-host transfer, no equality check).
  """
  sharding = replicated(mesh)
  if jax.process_count() == 1:
    return jax.device_put(tree, sharding)

  def put(x):
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
      return x  # already a global array
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
      return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

  return jax.tree.map(put, tree)


def shard_rows(index: tuple[slice, ...] | None, size: int) -> tuple[int, int]:
  """``(start, stop)`` of a device's shard ``index`` along the leading axis of ``size`` rows."""
  if index is None:  # jax types the map's values as optional; a named sharding has them all
    raise MerjaxError("jax gave no index for a device of the data sharding")
  rows = index[0]
  return rows.start or 0, size if rows.stop is None else rows.stop


def process_rows(mesh: Mesh, global_size: int) -> slice:
  """The rows of a ``[global_size, ...]`` array sharded along ``data`` on this process's devices.

  These are exactly the rows that ``jax.make_array_from_process_local_data`` places on this
  process's devices (the sharding's own ``addressable_devices_indices_map``), so a process
  that reads only them feeds its devices and nothing else. On one process: all rows.

  Args:
    mesh: the data mesh.
    global_size: rows of the global array (a multiple of the device count).

  Returns:
    A contiguous slice of ``range(global_size)``.

  Raises:
    MerjaxError: ``global_size`` does not divide across the devices, or this process's
      devices do not hold one contiguous block (a mesh whose device order interleaves hosts).
  """
  check_batch_size(global_size, mesh, what="global size")
  spans = sorted({shard_rows(index, global_size)
                  for index in data_sharding(mesh).addressable_devices_indices_map(
                      (global_size,)).values()})
  start, stop = spans[0][0], spans[-1][1]
  covered = sum(b - a for a, b in spans)
  if covered != stop - start or any(a != b for (_, a), (b, _) in zip(spans, spans[1:])):
    raise MerjaxError(f"this process's devices hold rows {spans} of the data axis, not one "
                      "contiguous block; build the mesh with parallel.make_data_mesh()")
  return slice(start, stop)


def _is_global(value: Any, sharding: NamedSharding) -> bool:
  return isinstance(value, jax.Array) and value.sharding.is_equivalent_to(sharding, value.ndim)


def shard_batch(batch: Mapping[str, Any], mesh: Mesh) -> dict[str, jax.Array]:
  """Assembles a global batch sharded along ``data`` from each process's local rows.

  Args:
    batch: this process's slice of the global batch, ``{key: [shape=(local_batch, ...)]}``
      (numpy or jax). Arrays already sharded along ``data`` on ``mesh`` pass through.
    mesh: the data mesh.

  Returns:
    ``{key: [shape=(local_batch * process_count, ...)]}`` sharded along ``data``.
  """
  sharding = data_sharding(mesh)
  out = {}
  for key, value in batch.items():
    if _is_global(value, sharding):
      out[key] = value
      continue
    local = np.asarray(value)
    global_rows = local.shape[0] * jax.process_count()
    check_batch_size(global_rows, mesh, what=f"global batch of {key!r}, size")
    out[key] = jax.make_array_from_process_local_data(sharding, local,
                                                      (global_rows, *local.shape[1:]))
  return out


def prefetch_to_mesh(batches: Iterable[Mapping[str, Any]], mesh: Mesh, *,
                     size: int = 2) -> Iterator[dict[str, jax.Array]]:
  """Assembles host batches on the devices ``size`` batches ahead of the consumer.

  Transfers are asynchronous: while the step runs on batch ``i``, batches ``i+1 .. i+size``
  are already being copied to their devices. Batches that already are global arrays on the
  mesh (device-resident, or prefetched upstream) pass straight through, without buffering.

  Args:
    batches: this process's rows of every global batch (see :func:`shard_batch`).
    mesh: the data mesh.
    size: batches in flight (at least 1).

  Yields:
    Global batches sharded along ``data``.
  """
  if size < 1:
    raise MerjaxError(f"prefetch size must be at least 1, got {size}")
  queue: collections.deque = collections.deque()
  sharding = data_sharding(mesh)
  for batch in batches:
    if all(_is_global(v, sharding) for v in batch.values()):
      while queue:
        yield queue.popleft()
      yield dict(batch)
      continue
    queue.append(shard_batch(batch, mesh))
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()
