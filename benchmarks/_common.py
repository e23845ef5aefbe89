"""Shared plumbing for the benchmark scripts (each row: the case, our
median and range, the reference implementation and the ratio; see README, Benchmarks)."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from merjax.parallel import platform as runtime

# Before any JAX computation creates the backend (XLA reads XLA_FLAGS once).
runtime.apply_xla_cpu_defaults()


def machine_info() -> dict[str, Any]:
  import jax
  info = {
      "devices": ", ".join(sorted({f"{d.platform}:{d.device_kind}" for d in jax.devices()})),
      "device_count": jax.device_count(),
      "cpu_count": os.cpu_count(),
      "python": platform.python_version(),
      "jax": jax.__version__,
      "xla_flags": os.environ.get("XLA_FLAGS", ""),
  }
  for name in ("flax", "librosa", "numpy"):
    try:
      info[name] = __import__(name).__version__
    except ImportError:
      pass
  return info


def time_call(fn: Callable[[], Any], *, repeats: int = 3, warmup: int = 1) -> float:
  """Best wall time of ``fn()`` in seconds; ``fn`` must block until its result is ready."""
  for _ in range(warmup):
    fn()
  best = float("inf")
  for _ in range(repeats):
    start = time.perf_counter()
    fn()
    best = min(best, time.perf_counter() - start)
  return best


def row(case: str, *, unit: str, ours: float, reference: float | None, reference_name: str | None,
        higher_is_better: bool = False, **extra: Any) -> dict[str, Any]:
  """One result row; ``ratio`` is how many times better ours is."""
  ratio = None
  if reference is not None and ours > 0 and reference > 0:
    ratio = ours / reference if higher_is_better else reference / ours
  return {"case": case, **extra, "unit": unit, "ours": ours, "reference": reference,
          "reference_name": reference_name, "ratio": ratio}


def _positive_int(text: str) -> int:
  value = int(text)
  if value < 1:
    raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
  return value


def parser(description: str, *, batches: Sequence[int] | None = None) -> argparse.ArgumentParser:
  """The common options (``--json``, ``--markdown``; ``--batch`` when ``batches`` is given)."""
  p = argparse.ArgumentParser(description=description)
  if batches is not None:
    p.add_argument("--batch", type=_positive_int, nargs="+", default=list(batches),
                   help=f"batch sizes (default: {' '.join(map(str, batches))})")
  p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
  p.add_argument("--markdown", metavar="PATH",
                 help="also write the table, with the machine and date, as Markdown to PATH "
                      "(the committed tables live in benchmarks/results/)")
  return p


def _fmt(value: Any) -> str:
  if value is None:
    return "-"
  if isinstance(value, float):
    return f"{value:.4g}"
  if isinstance(value, list):
    return "[" + ", ".join(_fmt(v) for v in value) + "]"
  return str(value)


def write_markdown(path: str, benchmark: str, columns: Sequence[str],
                   table: Sequence[Sequence[str]], *, machine: dict[str, Any] | None = None
                   ) -> None:
  """The table as Markdown under a heading that names the machine, versions and date."""
  info = machine or machine_info()
  lines = [f"# {benchmark}", "",
           f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {info['devices']} "
           f"({info['cpu_count']} CPU cores), "
           + ", ".join(f"{k} {info[k]}" for k in ("python", "jax", "flax", "librosa", "numpy")
                       if k in info)
           + (f", XLA_FLAGS `{info['xla_flags']}`" if info["xla_flags"] else "")
           + f". Regenerate: `python benchmarks/{benchmark}.py --markdown {path}`.", "",
           "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
  lines += ["| " + " | ".join(row) + " |" for row in table]
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")


def emit(benchmark: str, rows: Sequence[dict[str, Any]], *, as_json: bool,
         extra_columns: Sequence[str] = (), markdown: str | None = None,
         machine: dict[str, Any] | None = None) -> None:
  """Prints the rows as a table (or one JSON object with ``--json``).

  Args:
    benchmark: the script's name.
    rows: result rows (see :func:`row`).
    as_json: print one JSON object instead of the table.
    extra_columns: row keys shown after ``case``.
    markdown: also write the table as Markdown to this path.
    machine: the measuring process's :func:`machine_info`, when that was a child process
      (default: this process's; asking starts JAX's backend here).
  """
  machine = machine or machine_info()
  columns = ["case", *extra_columns, "unit", "ours", "reference", "reference_name", "ratio"]
  table = [[_fmt(r.get(c)) for c in columns] for r in rows]
  if markdown:
    write_markdown(markdown, benchmark, columns, table, machine=machine)
  if as_json:
    json.dump({"benchmark": benchmark, "machine": machine, "rows": list(rows)}, sys.stdout)
    sys.stdout.write("\n")
    return
  widths = [max(len(c), *(len(t[i]) for t in table)) if table else len(c)
            for i, c in enumerate(columns)]
  print(f"# {benchmark} on {machine['devices']} ({machine['cpu_count']} CPU cores)")
  print("  ".join(c.ljust(w) for c, w in zip(columns, widths)))
  for t in table:
    print("  ".join(v.ljust(w) for v, w in zip(t, widths)))
