"""``merjax train``: the three stages on a prepared dataset, saved as a model directory."""

from __future__ import annotations

from merjax.commands._options import (
  add_dataset_arguments,
  add_device_memory_argument,
  add_execution_arguments,
  add_feature_arguments,
  add_set_argument,
  add_training_arguments,
)


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
  add_execution_arguments(parser)
  add_set_argument(parser)
  add_device_memory_argument(parser)
  parser.add_argument("--out", required=True, help="model directory to create")
  parser.add_argument("--workdir", default=None,
                      help="keep per-epoch checkpoints here; rerunning the same command resumes "
                      "exactly where an interrupted run stopped")
  from merjax.parallel import add_distributed_arguments
  add_distributed_arguments(parser)
  parser.set_defaults(func=run)


def run(args) -> int:
  from merjax.commands._options import check_dataset, check_devices, config_from_args
  from merjax.parallel import initialize_from_args
  from merjax.parallel.files import check_writable
  from merjax.runs.dataset import train_model
  config = config_from_args(args)
  check_dataset(args)
  check_writable(args.out, what="--out")
  if args.workdir is not None:
    check_writable(args.workdir, what="--workdir")
  initialize_from_args(args)
  check_devices(args.devices)
  train_model(args.dataset, out=args.out, config=config, data_dir=args.data_dir,
              clips_per_quadrant=args.clips_per_quadrant, workers=args.workers,
              mesh="auto" if args.devices is None else args.devices, workdir=args.workdir,
              device_memory_gb=args.device_memory_gb)
  return 0
