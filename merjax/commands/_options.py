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


def add_feature_arguments(parser: argparse.ArgumentParser, *, model: bool = False) -> None:
  """``--features``, ``--table`` and ``--id-column``, as ``merjax features`` means them."""
  default = "the model's" if model else "builtin"
  parser.add_argument("--features", choices=("builtin", "essentia", "table"), default=None,
                      help="the DNN branch's features: builtin, essentia (needs pip install "
                      "'merjax[essentia]') or table (the CSV given with --table, e.g. the "
                      f"authors' 4QAED all_features.csv) (default: {default})")
  parser.add_argument("--table", default=None,
                      help="CSV of precomputed features keyed by song id (--features table)"
                      + ("; default: the table recorded in the model" if model else ""))
  parser.add_argument("--id-column", default=None,
                      help="the table's song-id column (default: Song, else the first column)")


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
  config = config.replace(augment=config.augment.replace(mode=args.augment, seed=args.seed),
                          seed=args.seed, **stages)
  from merjax.features.source import features_config
  return features_config(config, features=getattr(args, "features", None),
                         table=getattr(args, "table", None),
                         id_column=getattr(args, "id_column", None))
