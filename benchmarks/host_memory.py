"""Peak host memory of ``merjax train`` up to its first training step.

Runs ``merjax train`` on the synthetic quadrant set in a child process that stops when the
first stage is about to train (the call of :func:`merjax.train.fit`), and reports that
process's peak resident memory (``ru_maxrss``). The default size is MERGE Audio Complete's:
3,554 clips (889 per quadrant) of 30 s. Feature-extraction worker processes are not counted
(their memory is released before training; ``--workers 1`` keeps the extraction in one extra
process).

Case ``train_host_memory``, unit GiB (lower is better). ``--reference-tree PATH`` runs the same
measurement with another checkout of merjax (e.g. the previous release) in the same run and
reports the ratio.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from _common import emit, parser, row

REPO = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, resource, sys
import merjax.train.fit, merjax.train.stages

class FirstStep(Exception):
  pass

def stop(*args, **kwargs):
  raise FirstStep

merjax.train.fit.fit = merjax.train.stages.fit = stop
from merjax.cli import main
try:
  main(sys.argv[1:])
except FirstStep:
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
  print(json.dumps({"peak_bytes": peak}))
else:
  raise SystemExit("training finished without reaching a training step")
"""


def measure(tree: Path, *, clips_per_quadrant: int, seconds: float, augment: str, out: Path,
            extra: list[str]) -> int:
  """Peak resident bytes of ``merjax train`` from checkout ``tree`` up to its first step."""
  env = dict(os.environ, PYTHONPATH=str(tree), MPLBACKEND="Agg")
  command = [sys.executable, "-c", _CHILD, "train", "--dataset", "synthetic",
             "--clips-per-quadrant", str(clips_per_quadrant), "--seconds", str(seconds),
             "--augment", augment, "--out", str(out), "--workers", "1", *extra]
  proc = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True,
                        check=False)
  if proc.returncode != 0:
    raise SystemExit(f"merjax train from {tree} failed (exit {proc.returncode}):\n"
                     f"{proc.stderr[-3000:]}")
  return json.loads(proc.stdout.strip().splitlines()[-1])["peak_bytes"]


def main(argv=None) -> None:
  p = parser(__doc__.splitlines()[0])
  p.add_argument("--clips-per-quadrant", type=int, default=889,
                 help="synthetic clips per quadrant (default: %(default)s, MERGE Audio Complete's "
                      "3,554 clips)")
  p.add_argument("--seconds", type=float, default=30.0, help="clip length (default: 30)")
  p.add_argument("--augment", default="offline", choices=["offline", "online", "none"])
  p.add_argument("--reference-tree", type=Path, default=None,
                 help="another merjax checkout measured the same way, as the reference")
  p.add_argument("--pipeline", nargs="+", default=["default"],
                 help="CNN input pipelines to measure: default, or values of "
                      "AugmentConfig.pipeline passed as --cnn-inputs (e.g. precomputed waveforms)")
  p.add_argument("--work", type=Path, default=Path("/tmp/merjax-host-memory"),
                 help="scratch folder for the model directories (never completed)")
  args = p.parse_args(argv)
  size = dict(clips_per_quadrant=args.clips_per_quadrant, seconds=args.seconds,
              augment=args.augment)
  reference = None
  if args.reference_tree is not None:
    reference = measure(args.reference_tree, out=args.work / "reference", extra=[], **size)
  rows = []
  gib = 2 ** 30
  for pipeline in args.pipeline:
    extra = [] if pipeline == "default" else ["--cnn-inputs", pipeline]
    ours = measure(REPO, out=args.work / pipeline, extra=extra, **size)
    rows.append(row("train_host_memory", unit="GiB", ours=ours / gib,
                    reference=None if reference is None else reference / gib,
                    reference_name=None if reference is None else str(args.reference_tree),
                    pipeline=pipeline, clips=4 * args.clips_per_quadrant,
                    seconds=args.seconds, augment=args.augment))
  emit("host_memory", rows, as_json=args.json, markdown=args.markdown,
       extra_columns=("pipeline", "clips", "seconds", "augment"))


if __name__ == "__main__":
  main()
