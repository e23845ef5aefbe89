"""Arguments shared by several commands, and the config they select."""

from __future__ import annotations

import argparse


def add_dataset_arguments(parser: argparse.ArgumentParser, *, synthetic: bool = True) -> None:
  parser.add_argument("--dataset", required=True,
                      help="prepared dataset: merge:audio_balanced, merge:audio_complete, "
                      "merge:bimodal_balanced, merge:bimodal_complete (append :40_30_30 for that "
                      "split), 4qaed, folder:NAME" + (", or synthetic" if synthetic else ""))
  parser.add_argument("--data-dir", default=None,
                      help="root of the prepared stores (default: $MERJAX_DATA_DIR or "
                      "~/merjax_data)")
  if synthetic:
    parser.add_argument("--clips-per-quadrant", type=int, default=40,
                        help="synthetic clips per quadrant (--dataset synthetic only)")
    parser.add_argument("--seconds", type=float, default=None,
                        help="clip length in seconds (default: 30; 5 for --dataset synthetic)")


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--hparams", default=None,
                      help="Table 2 preset to train with (merge_audio_balanced, ...); default: "
                      "the dataset's own for MERGE, else merge_audio_balanced")
  parser.add_argument("--augment", choices=("none", "offline", "online"), default="offline",
                      help="CNN-branch augmentation: offline is the paper's x5 set, online draws "
                      "fresh parameters every epoch (default: %(default)s)")
  parser.add_argument("--max-epochs", type=int, default=None,
                      help="cap on epochs per stage (default: the paper's 200)")
  parser.add_argument("--seed", type=int, default=0, help="seed of everything (default: 0)")
  parser.add_argument("--workers", type=int, default=None,
                      help="feature-extraction processes (default: cores, at most 4)")


def _gib(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    value = float("nan")
  if not 0 <= value < float("inf"):
    raise argparse.ArgumentTypeError(f"must be a non-negative number of GiB, got {text!r}")
  return value


def add_device_memory_argument(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--device-memory-gb", type=_gib, default=None,
                      help="GiB per device that a training split may take when kept on the "
                      "devices (sharded over them); larger splits stream from the host "
                      "(default: 80%% of the device's free memory; on CPU 80%% of the available "
                      "RAM shared by the devices)")


def config_from_args(args):
  """The paper config for the dataset, with the command line's overrides."""
  from merjax.config import PAPER_DATASETS, paper_config
  from merjax.errors import MerjaxError

  preset = args.hparams
  if preset is None:
    key = "_".join(args.dataset.split(":")[:2]).lower()
    preset = key if key in PAPER_DATASETS else "merge_audio_balanced"
  try:
    config = paper_config(preset)
  except ValueError as error:
    raise MerjaxError(str(error)) from None
  if args.max_epochs is not None and args.max_epochs <= 0:
    raise MerjaxError(f"--max-epochs must be positive, got {args.max_epochs}")
  seconds = getattr(args, "seconds", None)
  if seconds is None and args.dataset == "synthetic":
    seconds = 5.0
  if seconds is not None:
    if not seconds > 0:
      raise MerjaxError(f"--seconds must be positive, got {seconds}")
    config = config.replace(audio=config.audio.replace(clip_seconds=seconds))
  stages = {}
  for name in ("cnn", "dnn", "fusion"):
    changes = {"seed": args.seed}
    if args.max_epochs is not None:
      changes["max_epochs"] = args.max_epochs
    stages[name] = config.stage(name).replace(**changes)
  return config.replace(augment=config.augment.replace(mode=args.augment, seed=args.seed),
                        seed=args.seed, **stages)
