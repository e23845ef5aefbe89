"""Data parallelism over a device mesh, and multi-host initialisation.

One mesh axis, ``data``: every batch is split along it, while params, BatchNorm statistics
and the optimizer state are replicated. The training step is a plain ``jax.jit`` with these
shardings (:func:`merjax.train.steps.mesh_train_step`), not ``pmap``: XLA inserts the
gradient all-reduce, and a mean over the batch axis (BatchNorm's statistics, the loss) is a
mean over the *global* batch, so N devices compute what one device computes on the whole
batch.

The mesh uses ``AxisType.Auto`` (sharding propagated by the compiler): ``jax.make_mesh``
defaults to explicit axis types in this jax version, under which Flax Linen's ``Dropout``
(``lax.select`` between a replicated mask and sharded activations) fails to trace.

Multi-host: call :func:`initialize_distributed` before anything touches a device; every
process then builds the same global mesh and feeds its own slice of each global batch
(:func:`process_batch_slice`, or grain's ``ShardByJaxProcess``); :func:`shard_batch` assembles
the global array with ``jax.make_array_from_process_local_data``.
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
from typing import Any, Iterable, Iterator, Mapping, Sequence

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from merjax.errors import MerjaxError

DATA_AXIS = "data"

# Environment variables read by initialize_distributed when no argument is given
# (JAX_COORDINATOR_ADDRESS is also jax's own name).
ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"

_initialized = False


def detect_cluster() -> tuple[str, int] | None:
  """The multi-process launcher that JAX's own cluster detection finds, with its process count.

  Asks each of JAX's cluster environments in JAX's order (SLURM, Open MPI, Cloud TPU VM via
  the metadata server, GKE TPU, Kubernetes; mpi4py is opt-in only, as in JAX), so merjax joins
  exactly the runs that ``jax.distributed.initialize()`` with no arguments would join.

  Returns:
    ``(name, process_count)`` of the first environment present, or None outside any cluster.
    A cluster whose layout cannot be read (metadata server unreachable, a missing package)
    counts as absent, with the reason logged.
  """
  try:
    from jax._src import clusters  # JAX's registry; no public API exposes the detection
  except ImportError:  # pragma: no cover - a jax that moved it: fall back to no detection
    logging.getLogger(__name__).warning("this jax has no cluster registry; pass --coordinator")
    return None
  for env in clusters.ClusterEnv._cluster_types:
    if env.opt_in_only_method:
      continue
    try:
      if not env.is_env_present():
        continue
      count = int(env.get_process_count())
    except Exception as error:  # noqa: BLE001 - any failure of a probe means "not this one"
      logging.getLogger(__name__).warning("%s cluster detected but unreadable: %s",
                                          env.__name__, error)
      continue
    return (env.name or env.__name__), count
  return None


def initialize_distributed(*, coordinator: str | None = None, num_processes: int | None = None,
                           process_id: int | None = None,
                           local_device_ids: Sequence[int] | None = None,
                           timeout_s: int = 300, auto: bool | None = None) -> bool:
  """Joins a multi-process (multi-host) JAX run, or does nothing for a single process.

  The layout comes from, in order: the arguments; the environment variables
  ``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``; a cluster of more
  than one process that JAX's own detection finds (:func:`detect_cluster`: SLURM, Open MPI, a
  Cloud TPU VM pod slice through its metadata server, GKE TPU, Kubernetes).
  Must run before the first computation, and on every process with the same coordinator.

  Args:
    coordinator: ``host:port`` of process 0's coordination service.
    num_processes: the number of processes in the run.
    process_id: this process's index, ``0 <= process_id < num_processes``.
    local_device_ids: the accelerators this process drives (default: all visible ones).
    timeout_s: how long to wait for the other processes to join.
    auto: ``True`` forces jax's cluster auto-detection, ``False`` forbids it, ``None``
      uses it when a supported launcher is detected.

  Returns:
    True when a multi-process run was joined (now or earlier), False for a single process.

  Raises:
    MerjaxError: an incomplete or invalid explicit layout, or a failed join.
  """
  global _initialized
  if _initialized:
    return True
  env = os.environ
  coordinator = coordinator or env.get(ENV_COORDINATOR) or None
  if num_processes is None and env.get(ENV_NUM_PROCESSES):
    num_processes = int(env[ENV_NUM_PROCESSES])
  if process_id is None and env.get(ENV_PROCESS_ID):
    process_id = int(env[ENV_PROCESS_ID])
  explicit = (coordinator, num_processes, process_id)
  if all(v is None for v in explicit):
    if auto is False:
      return False
    cluster = detect_cluster()
    if auto is None and (cluster is None or cluster[1] <= 1):
      return False  # one process (a single-host TPU VM, a one-task SLURM job): no service
    kwargs: dict[str, Any] = {} if cluster is None else {"cluster_detection_method": cluster[0]}
  else:
    if any(v is None for v in explicit):
      raise MerjaxError(
          "multi-host run needs all of coordinator, num_processes and process_id "
          f"(got coordinator={coordinator!r}, num_processes={num_processes!r}, "
          f"process_id={process_id!r}); set the flags or {ENV_COORDINATOR}, "
          f"{ENV_NUM_PROCESSES} and {ENV_PROCESS_ID}")
    if not 0 <= process_id < num_processes:
      raise MerjaxError(f"process_id {process_id} is outside 0..{num_processes - 1}")
    if num_processes == 1:
      return False
    kwargs = {"coordinator_address": coordinator, "num_processes": num_processes,
              "process_id": process_id}
  if local_device_ids is not None:
    kwargs["local_device_ids"] = list(local_device_ids)
  try:
    jax.distributed.initialize(initialization_timeout=timeout_s, **kwargs)
  except (RuntimeError, ValueError) as e:
    raise MerjaxError(f"could not join the multi-host run ({kwargs or 'auto-detected'}): "
                      f"{e}") from e
  _initialized = True
  return True


def add_distributed_arguments(parser: argparse.ArgumentParser) -> None:
  """Adds ``--coordinator``, ``--num-processes``, ``--process-id`` and ``--devices``."""
  group = parser.add_argument_group("parallelism")
  group.add_argument("--coordinator", default=None,
                     help=f"host:port of process 0 for a multi-host run (or ${ENV_COORDINATOR}); "
                          "SLURM, Open MPI and TPU pods are detected without it")
  group.add_argument("--num-processes", type=int, default=None,
                     help=f"number of processes of a multi-host run (or ${ENV_NUM_PROCESSES})")
  group.add_argument("--process-id", type=int, default=None,
                     help=f"index of this process in a multi-host run (or ${ENV_PROCESS_ID})")
  group.add_argument("--devices", type=int, default=None,
                     help="train data-parallel on this many devices (default: all of them)")


def initialize_from_args(args: argparse.Namespace) -> bool:
  """:func:`initialize_distributed` from the flags of :func:`add_distributed_arguments`."""
  return initialize_distributed(coordinator=getattr(args, "coordinator", None),
                                num_processes=getattr(args, "num_processes", None),
                                process_id=getattr(args, "process_id", None))


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


def resolve_mesh(mesh: Mesh | int | str | None = "auto") -> Mesh | None:
  """The mesh a training run uses.

  Args:
    mesh: ``"auto"`` (every device when there are several, else none), an int (that many
      devices; 1 means a mesh of one), a ready :class:`Mesh`, or ``None`` (no mesh: the plain
      single-device step).

  Returns:
    A data mesh, or None for plain single-device training.
  """
  if mesh is None or isinstance(mesh, Mesh):
    return mesh
  if isinstance(mesh, str):
    if mesh != "auto":
      raise MerjaxError(f"mesh must be 'auto', a device count or a Mesh, got {mesh!r}")
    return make_data_mesh() if jax.device_count() > 1 else None
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


def process_batch_slice(global_batch_size: int) -> slice:
  """This process's rows of every global batch (process ``p`` of ``P`` takes the p-th block)."""
  count, index = jax.process_count(), jax.process_index()
  if global_batch_size % count:
    raise MerjaxError(f"global batch size {global_batch_size} does not divide across "
                      f"{count} processes")
  local = global_batch_size // count
  return slice(index * local, (index + 1) * local)


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
  spans = sorted({(index[0].start or 0, global_size if index[0].stop is None else index[0].stop)
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


def is_primary() -> bool:
  """Whether this process writes the run's own files (config, reports, plots, logs).

  Orbax checkpoints are written by every process together; everything else by process 0.
  """
  return jax.process_index() == 0


def prefetch_to_mesh(batches: Iterable[Mapping[str, Any]], mesh: Mesh | None, *,
                     size: int = 2) -> Iterator[dict[str, jax.Array]]:
  """Assembles host batches on the devices ``size`` batches ahead of the consumer.

  Transfers are asynchronous: while the step runs on batch ``i``, batches ``i+1 .. i+size``
  are already being copied to their devices. Batches that already are global arrays on the
  mesh (device-resident, or prefetched upstream) pass straight through, without buffering.

  Args:
    batches: this process's rows of every global batch (see :func:`shard_batch`).
    mesh: the data mesh; None puts whole batches on the default device.
    size: batches in flight (at least 1).

  Yields:
    Global batches sharded along ``data`` (or single-device batches without a mesh).
  """
  if size < 1:
    raise MerjaxError(f"prefetch size must be at least 1, got {size}")
  queue: collections.deque = collections.deque()
  sharding = None if mesh is None else data_sharding(mesh)
  for batch in batches:
    if sharding is not None and all(_is_global(v, sharding) for v in batch.values()):
      while queue:
        yield queue.popleft()
      yield batch
      continue
    queue.append(shard_batch(batch, mesh) if mesh is not None else jax.device_put(dict(batch)))
    if len(queue) > size:
      yield queue.popleft()
  while queue:
    yield queue.popleft()
