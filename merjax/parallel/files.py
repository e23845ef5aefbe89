"""Output paths: writability checked before any work, directories written atomically.

:func:`check_writable` is what every command calls on its output paths before it reads or
computes anything, so a read-only ``--out`` fails in one line at once instead of after hours of
training. :func:`atomic_directory` writes a directory under a temporary name next to it and
renames it into place only when complete: a run killed while writing leaves no half-written
directory behind, and the same command run again just works.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from merjax.errors import MerjaxError

_PARTIAL = ".partial-"


def _nearest_existing(path: Path) -> Path:
  while not path.exists() and path != path.parent:
    path = path.parent
  return path


def check_writable(path: str | os.PathLike, *, what: str, file: bool = False) -> Path:
  """Checks that ``path`` can be created (or written into) as a directory, or as a file.

  The nearest existing folder on the way is probed by creating and removing a file in it, so
  read-only file systems, permissions and immutable folders are all caught (``os.access``
  would say yes to root).

  Args:
    path: the directory a command will write (need not exist yet).
    what: how the message names it, e.g. ``"--out"``.
    file: ``path`` is a file to write (its folder is probed), not a directory.

  Returns:
    ``path`` as an absolute :class:`Path`.

  Raises:
    MerjaxError: one line naming ``what`` and ``path``: a file is in the way, or the folder
      is not writable.
  """
  path = Path(path).absolute()
  if file and path.is_dir():
    raise MerjaxError(f"{what} {path} is a directory; give a file name")
  existing = _nearest_existing(path.parent if file else path)
  if existing == path and not path.is_dir():
    raise MerjaxError(f"{what} {path} exists and is not a directory")
  if not existing.is_dir():
    raise MerjaxError(f"{what} {path}: not writable ({existing} is a file, not a directory)")
  try:
    fd, probe = tempfile.mkstemp(prefix=".merjax-write-test-", dir=existing)
    os.close(fd)
    os.remove(probe)
  except OSError as error:
    folder = "" if existing == path else f" (its folder {existing})"
    raise MerjaxError(f"{what} {path}: not writable{folder}: "
                      f"{error.strerror or error}") from None
  return path


def _alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  return True


def _remove_stale_partials(path: Path) -> None:
  """Removes what runs killed while writing ``path`` left (their process no longer exists)."""
  if not path.parent.is_dir():
    return
  prefix = f".{path.name}{_PARTIAL}"
  for entry in path.parent.iterdir():
    if entry.name.startswith(prefix):
      pid = entry.name[len(prefix):].split("-", 1)[0]
      if not pid.isdigit() or not _alive(int(pid)):
        shutil.rmtree(entry, ignore_errors=True)


def _process_layout() -> tuple[int, int]:
  """(process index, process count) of a multi-host JAX run; (0, 1) without one.

  Looks only at a jax that is already imported, so commands that never use JAX stay light.
  """
  jax = sys.modules.get("jax")
  if jax is None:
    return 0, 1
  return jax.process_index(), jax.process_count()


def _agree_on_path(path: Path | None) -> Path:
  """Process 0's ``path``, on every process of a multi-host run."""
  from jax.experimental import multihost_utils
  encoded = np.zeros(4096, np.uint8)
  if path is not None:
    raw = os.fsencode(path)
    encoded[:len(raw)] = np.frombuffer(raw, np.uint8)
  shared = np.asarray(multihost_utils.broadcast_one_to_all(encoded))
  return Path(os.fsdecode(shared[shared > 0].tobytes()))


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
  """Yields a temporary folder next to ``path`` that becomes ``path`` when the block succeeds.

  ``path`` must not exist or be an empty directory. The temporary folder is
  ``.<name>.partial-<pid>-<random>`` in the same parent (so the final rename stays on one file
  system and is atomic); on an exception it is removed, and leftovers of killed runs are
  removed the next time. In a multi-host run every process enters the block with the same
  folder (orbax checkpoints are written by all processes together), and process 0 alone
  creates, renames and cleans up, after every process has finished writing.

  Args:
    path: the directory to create.

  Yields:
    The temporary folder to write everything into.

  Raises:
    MerjaxError: ``path`` exists and is not an empty directory (before or after the block).
  """
  path = Path(path).absolute()
  index, count = _process_layout()

  def check_free() -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
      raise MerjaxError(f"{path} exists and is not an empty directory")

  tmp: Path | None = None
  if index == 0:
    check_free()
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_partials(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}{_PARTIAL}{os.getpid()}-",
                                dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp's 0700 would become the directory's mode
  if count > 1:
    tmp = _agree_on_path(tmp)
  if tmp is None:  # one process is process 0, which made the folder
    raise MerjaxError(f"process {index} of {count} has no temporary folder for {path}")
  try:
    yield tmp
    if count > 1:
      from jax.experimental import multihost_utils
      multihost_utils.sync_global_devices(f"merjax: {path} written")
    if index == 0:
      check_free()
      if path.exists():
        path.rmdir()
      os.rename(tmp, path)
    if count > 1:
      multihost_utils.sync_global_devices(f"merjax: {path} renamed")
  except BaseException:
    if index == 0:
      shutil.rmtree(tmp, ignore_errors=True)
    raise
