"""``merjax demo``: train and evaluate the hybrid on the embedded synthetic data."""

from __future__ import annotations


def register(subparsers) -> None:
  from merjax.runs.demo import DEFAULT_CLIPS_PER_QUADRANT, DEFAULT_SECONDS
  parser = subparsers.add_parser(
      "demo", help="run the whole hybrid method on generated synthetic quadrant data",
      description="Generate a synthetic four-quadrant dataset, split it 70-15-15, extract "
      "log-mels and handcrafted features, train the CNN, DNN and fusion stages with the "
      "paper's Table 2 hyperparameters (MERGE Bimodal Balanced), and report the test metrics "
      "of the CNN, the DNN and the hybrid side by side.")
  parser.add_argument("--out", default="merjax_demo",
                      help="output directory for metrics.json, metrics.md and plots "
                      "(default: %(default)s)")
  parser.add_argument("--clips-per-quadrant", type=int, default=DEFAULT_CLIPS_PER_QUADRANT,
                      help="synthetic clips per quadrant (default: %(default)s)")
  parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS,
                      help="clip length in seconds; the paper uses 30 (default: %(default)s)")
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the data and the model (seed and data_seed; default: 0)")
  parser.add_argument("--max-epochs", type=int, default=None,
                      help="cap on epochs per stage (default: the paper's 200)")
  from merjax.commands._options import add_set_argument
  add_set_argument(parser)
  parser.set_defaults(func=run)


def run(args) -> int:
  from merjax.config import parse_override
  from merjax.parallel.files import check_writable
  from merjax.runs.demo import run_demo
  overrides = [parse_override(text) for text in args.overrides]
  check_writable(args.out, what="--out")
  run_demo(out_dir=args.out, clips_per_quadrant=args.clips_per_quadrant, seconds=args.seconds,
           seed=args.seed, max_epochs=args.max_epochs, overrides=overrides)
  return 0
