"""Multi-host start-up: which cluster this process is in, and joining it.

Call :func:`initialize_distributed` before anything touches a device. With no arguments it
asks JAX's own cluster registry (:func:`detect_cluster`: Cloud TPU VMs, GKE, SLURM, Open MPI,
Kubernetes) or the ``JAX_*`` variables below; every process then builds the same global mesh
(:mod:`merjax.parallel.mesh`). Only the primary process writes the run's own files.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Sequence
from typing import Any

import jax

from merjax.errors import MerjaxError

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
    if coordinator is None or num_processes is None or process_id is None:
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


def is_primary() -> bool:
  """Whether this process writes the run's own files (config, reports, plots, logs).

  Orbax checkpoints are written by every process together; everything else by process 0.
  """
  return jax.process_index() == 0
