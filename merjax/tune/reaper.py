"""Ray processes die with the driver that started them, even when it is killed with SIGKILL.

Ray ties its GCS server and raylet to the driver's life, but the agents the raylet starts
(``ray::DashboardAgent``, ``ray::RuntimeEnvAgent``) outlive a driver killed with ``kill -9`` by
minutes, with a listener on loopback. :func:`reaped` starts this module as a small watchdog
process for the driver. While the driver lives, the watchdog notes every process below it
once a second (Ray's servers, agents and workers among them). When the driver dies, which
the watchdog sees as the end of its stdin pipe (the kernel closes it however the driver ends),
it stops those processes, and any other that carries the session's token in its environment
(set before Ray starts, inherited by what Ray starts later): SIGTERM, then SIGKILL after a
grace period. When the driver leaves the session normally, Ray has shut itself down and only
processes carrying the token are stopped.

Linux only (it reads ``/proc``); elsewhere :func:`reaped` does nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator

ENV = "MERJAX_RAY_SESSION"
_GRACE_SECONDS = 3.0
_POLL_SECONDS = 1.0
_DONE = b"done"


def _stat(pid: int) -> tuple[int, int] | None:
  """``(parent pid, start time)`` of a process, or None if it is gone (or a zombie)."""
  try:
    with open(f"/proc/{pid}/stat", "rb") as f:
      fields = f.read().rsplit(b")", 1)[1].split()
  except (OSError, IndexError):
    return None
  if fields[0] == b"Z":
    return None
  return int(fields[1]), int(fields[19])


def descendants(pid: int) -> dict[int, int]:
  """Every process below ``pid``: ``pid -> start time``."""
  children: dict[int, list[int]] = {}
  starts = {}
  for entry in os.listdir("/proc"):
    if entry.isdigit():
      info = _stat(int(entry))
      if info is not None:
        children.setdefault(info[0], []).append(int(entry))
        starts[int(entry)] = info[1]
  found, frontier = {}, [pid]
  while frontier:
    for child in children.get(frontier.pop(), ()):
      if child not in found and child in starts:
        found[child] = starts[child]
        frontier.append(child)
  return found


def marked(token: str) -> dict[int, int]:
  """The processes (other than this one) whose environment holds ``ENV=token``."""
  marker = f"{ENV}={token}".encode()
  found = {}
  for entry in os.listdir("/proc"):
    if not entry.isdigit() or int(entry) == os.getpid():
      continue
    try:
      with open(f"/proc/{entry}/environ", "rb") as f:
        if marker in f.read().split(b"\0"):
          info = _stat(int(entry))
          if info is not None:
            found[int(entry)] = info[1]
    except OSError:  # gone meanwhile, or not ours to read
      continue
  return found


def stop(processes: dict[int, int], *, grace_seconds: float = _GRACE_SECONDS) -> list[int]:
  """SIGTERM to each ``pid -> start time`` still running (not a reused pid), then SIGKILL.

  Returns:
    The process ids that were signalled.
  """
  def alive() -> list[int]:
    return [pid for pid, start in processes.items()
            if pid != os.getpid() and (_stat(pid) or (0, None))[1] == start]

  signalled = alive()
  for pid in signalled:
    with contextlib.suppress(OSError):
      os.kill(pid, signal.SIGTERM)
  deadline = time.monotonic() + grace_seconds
  while time.monotonic() < deadline and alive():
    time.sleep(0.1)
  for pid in alive():
    with contextlib.suppress(OSError):
      os.kill(pid, signal.SIGKILL)
  return signalled


@contextlib.contextmanager
def reaped() -> Iterator[None]:
  """Stops the processes started in the body when this process ends, however it ends.

  Inside the body, ``ENV`` holds a fresh token (so Ray processes started there inherit it),
  and a watchdog process (``python merjax/tune/reaper.py TOKEN``) watches this one.
  """
  if not sys.platform.startswith("linux"):
    yield
    return
  token = uuid.uuid4().hex
  saved = os.environ.get(ENV)
  environment = {k: v for k, v in os.environ.items() if k != ENV}
  # Its own session: a Ctrl-C to the terminal's process group does not stop it first. Run as
  # a script, it imports nothing of merjax (the package would take seconds to import) and
  # watches from its first second on.
  watchdog = subprocess.Popen([sys.executable, os.path.abspath(__file__), token],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env=environment,
                              start_new_session=True)
  os.environ[ENV] = token
  try:
    yield
  finally:
    if saved is None:
      os.environ.pop(ENV, None)
    else:
      os.environ[ENV] = saved
    with contextlib.suppress(OSError):
      assert watchdog.stdin is not None  # started with stdin=PIPE
      watchdog.stdin.write(_DONE + b"\n")
      watchdog.stdin.close()
    with contextlib.suppress(subprocess.TimeoutExpired):
      watchdog.wait(timeout=_GRACE_SECONDS + 10)


def watch(driver: int, token: str, lines: Iterable[bytes]) -> list[int]:
  """The watchdog's work: note the driver's processes until ``lines`` ends, then stop them.

  Args:
    driver: the driver's process id.
    token: the session's token (see :data:`ENV`).
    lines: the driver's messages; it ends when the driver's end of the pipe closes.

  Returns:
    The process ids stopped.
  """
  ended, done = threading.Event(), threading.Event()

  def read() -> None:
    for line in lines:
      if line.strip() == _DONE:
        done.set()
    ended.set()

  threading.Thread(target=read, daemon=True).start()
  seen: dict[int, int] = {}
  while not ended.wait(_POLL_SECONDS):
    seen.update(descendants(driver))
  processes = marked(token)
  if not done.is_set():  # the driver died: everything it had started goes with it
    processes.update(seen)
  return stop(processes)


def main(argv: list[str]) -> int:
  """``python merjax/tune/reaper.py TOKEN``, started by :func:`reaped` with a pipe as stdin."""
  signal.signal(signal.SIGINT, signal.SIG_IGN)
  watch(os.getppid(), argv[1], sys.stdin.buffer)
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
