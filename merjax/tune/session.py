"""The Ray session a search runs in: embedded on this machine, or an existing cluster.

Embedded Ray starts without the dashboard and on the loopback interface only. Ray resolves
``127.0.0.1`` to the machine's public address unless it is in its single-machine mode (the
mode it uses on macOS and Windows, ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``), so the session
switches that mode on for its own lifetime: the node address is then 127.0.0.1 and every Ray
server listens on loopback. ``address=...`` joins a cluster started with ``ray start --head``; a
loopback address (a head started on this machine with ``--node-ip-address=127.0.0.1`` in the
same single-machine mode) keeps the mode on, any other address leaves it off. The processes of
an embedded session end with the driver, even when it is killed (:mod:`merjax.tune.reaper`).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from merjax.errors import MerjaxError
from merjax.tune.reaper import reaped

_LOCAL_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def _import_ray():
  try:
    import ray
  except ImportError:
    raise MerjaxError("hyperparameter search needs Ray Tune: pip install 'merjax[tune]'"
                      ) from None
  return ray


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
  from ray._private import ray_constants  # read at call time by Ray's node-address lookup

  saved_env = os.environ.get(_LOCAL_ONLY_ENV)
  saved_flag = ray_constants.ENABLE_RAY_CLUSTER
  os.environ[_LOCAL_ONLY_ENV] = "0"  # inherited by the Ray processes started below
  ray_constants.ENABLE_RAY_CLUSTER = False
  try:
    yield
  finally:
    ray_constants.ENABLE_RAY_CLUSTER = saved_flag
    if saved_env is None:
      os.environ.pop(_LOCAL_ONLY_ENV, None)
    else:
      os.environ[_LOCAL_ONLY_ENV] = saved_env


def _is_loopback(address: str) -> bool:
  host = address.rsplit(":", 1)[0] if ":" in address else address
  return host in ("127.0.0.1", "localhost", "[::1]", "::1")


@contextlib.contextmanager
def ray_session(*, address: str | None = None, num_cpus: int | None = None,
                num_gpus: int | None = None) -> Iterator[None]:
  """Runs the body inside a Ray session, started and shut down here unless one is running.

  Args:
    address: ``HOST:PORT`` of a running cluster's head (``ray start --head``), ``"auto"``
      for the local one, or ``None`` for an embedded session on this machine.
    num_cpus: CPUs of the embedded session (default: all cores).
    num_gpus: GPUs of the embedded session (default: Ray's detection).
  """
  ray = _import_ray()
  if ray.is_initialized():  # the caller's session (e.g. a notebook or a test fixture)
    yield
    return
  options: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False,
                                 logging_level=logging.WARNING)
  with contextlib.ExitStack() as stack:
    if address is None or _is_loopback(address):
      stack.enter_context(_loopback_only())
    if address is None:
      # Its processes (agents included) end with this driver, even after a kill -9.
      stack.enter_context(reaped())
      options.update(num_cpus=num_cpus or os.cpu_count() or 1, num_gpus=num_gpus)
    else:
      options.update(address=address)
    try:
      ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as error:
      where = f"the Ray cluster at {address}" if address else "an embedded Ray session"
      raise MerjaxError(f"could not start {where}: {error}") from None
    try:
      yield
    finally:
      ray.shutdown()
