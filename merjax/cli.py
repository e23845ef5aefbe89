"""The ``merjax`` command line: discovers sub-commands in :mod:`merjax.commands`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from merjax import commands
from merjax.errors import MerjaxError


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog="merjax",
      description="Hybrid music emotion recognition (Louro et al., LAMIR 2024) in JAX.")
  subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
  for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
    if info.name.startswith("_"):
      continue
    importlib.import_module(f"{commands.__name__}.{info.name}").register(subparsers)
  return parser


def main(argv: list[str] | None = None) -> int:
  parser = build_parser()
  args = parser.parse_args(argv)
  try:
    from merjax.commands._options import validate_arguments
    validate_arguments(args)
    return int(args.func(args) or 0)
  except MerjaxError as error:
    print(f"merjax {args.command}: error: {error}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print(f"merjax {args.command}: interrupted", file=sys.stderr)
    return 130


def entry() -> int:
  """The ``merjax`` console script: XLA defaults for this host (:mod:`merjax.parallel.platform`),
  then :func:`main`. Tests call :func:`main` directly, in a process whose backend already runs."""
  from merjax.parallel import platform as runtime
  runtime.apply_xla_cpu_defaults()
  return main()


if __name__ == "__main__":
  sys.exit(entry())
