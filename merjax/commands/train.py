"""``merjax train``: the three stages on a prepared dataset, saved as a model directory."""

from __future__ import annotations

from merjax.commands._options import (add_dataset_arguments, add_feature_arguments,
                                      add_training_arguments)


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "train", help="train the CNN, DNN and fusion stages on a dataset",
      description="Train the hybrid (CNN stage, DNN stage, frozen-branch fusion stage) with the "
      "paper's protocol on a prepared dataset, write a self-contained model directory (orbax "
      "checkpoints, config, normalisation statistics, feature preprocessing) and its test "
      "report.")
  add_dataset_arguments(parser)
  add_feature_arguments(parser)
  add_training_arguments(parser)
  parser.add_argument("--out", required=True, help="model directory to create")
  parser.add_argument("--workdir", default=None,
                      help="keep per-epoch checkpoints here; rerunning the same command resumes "
                      "exactly where an interrupted run stopped")
  from merjax.parallel import add_distributed_arguments
  add_distributed_arguments(parser)
  parser.set_defaults(func=run)


def run(args) -> int:
  from merjax.commands._options import config_from_args
  from merjax.parallel import initialize_from_args
  from merjax.runs import train_model
  initialize_from_args(args)
  train_model(args.dataset, out=args.out, config=config_from_args(args), data_dir=args.data_dir,
              clips_per_quadrant=args.clips_per_quadrant, workers=args.workers,
              mesh=args.devices or "auto", workdir=args.workdir)
  return 0
