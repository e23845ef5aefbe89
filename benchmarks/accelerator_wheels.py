"""Prepares and runs benchmarks/accelerator.py on a GPU box that has no package registry.

Such a box usually brings its own Python (e.g. 3.12) with jax, flax, optax, orbax-checkpoint,
numpy, scipy, scikit-learn, numba, tqdm, msgpack and lazy-loader, but not librosa and the few
packages it needs. So:

  python benchmarks/accelerator_wheels.py fetch [--python-version 3.12]   # here, with a registry
  python benchmarks/accelerator_wheels.py install                         # there
  python benchmarks/accelerator_wheels.py run [accelerator.py options]    # there: install + run

``fetch`` downloads the wheels of :data:`WHEELS` (no dependencies resolved: the list is
complete for librosa 0.11 on top of the box's packages) for CPython manylinux x86_64 into
``.whl/`` (git-ignored). ``install`` puts them into ``/tmp/site`` with ``pip install --no-index
--no-deps --target``; ``run`` does that and starts the benchmark with
``PYTHONPATH=<repo>:/tmp/site``, from the source tree (merjax itself is not installed).
"""

from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WHEEL_DIR = os.path.join(REPO, ".whl")
SITE = "/tmp/site"
# librosa 0.11.0's requirements that such a box lacks, and theirs (cffi for soundfile).
WHEELS = ("librosa==0.11.0", "soxr==1.1.0", "soundfile==0.13.1", "audioread==3.0.1",
          "decorator==5.2.1", "pooch==1.8.2", "platformdirs==4.3.8", "cffi==1.17.1",
          "pycparser==2.22")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64")


def fetch(python_version: str, dest: str = WHEEL_DIR) -> list[str]:
  """Downloads :data:`WHEELS` for CPython ``python_version`` into ``dest``; returns the files."""
  os.makedirs(dest, exist_ok=True)
  command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", "--python-version", python_version, "--implementation", "cp",
             "-d", dest]
  for platform in PLATFORMS:
    command += ["--platform", platform]
  subprocess.run(command + list(WHEELS), check=True)
  return sorted(glob.glob(os.path.join(dest, "*.whl")))


def install(source: str = WHEEL_DIR, target: str = SITE) -> None:
  """Installs every wheel in ``source`` into ``target`` without a registry."""
  wheels = sorted(glob.glob(os.path.join(source, "*.whl")))
  if not wheels:
    raise SystemExit(f"no wheels in {source}: run `python {sys.argv[0]} fetch` first")
  subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--no-deps",
                  "--no-compile", "--no-cache-dir", "--upgrade", "--target", target, *wheels],
                 check=True)


def run(options: list[str], *, source: str = WHEEL_DIR, target: str = SITE) -> int:
  """Installs the wheels, then runs the benchmark from the source tree; returns its exit code."""
  install(source, target)
  env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, target]), PYTHONUNBUFFERED="1")
  script = os.path.join(REPO, "benchmarks", "accelerator.py")
  return subprocess.run([sys.executable, script, *options], env=env, check=False).returncode


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("action", choices=("fetch", "install", "run"))
  p.add_argument("--python-version", default="3.12", help="fetch: the target's Python (3.12)")
  p.add_argument("--wheels", default=WHEEL_DIR, help="the wheel folder (.whl/)")
  p.add_argument("--target", default=SITE, help="install: the folder to install into")
  args, rest = p.parse_known_args()
  if args.action == "fetch":
    for path in fetch(args.python_version, args.wheels):
      print(os.path.relpath(path, REPO))
  elif args.action == "install":
    install(args.wheels, args.target)
  else:
    sys.exit(run(rest, source=args.wheels, target=args.target))


if __name__ == "__main__":
  main()
