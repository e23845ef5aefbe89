"""Arguments shared by several commands, and the config they select."""

from __future__ import annotations

import argparse

# Shortest clip the CNN takes: its four pooling blocks need input left (as `merjax demo`).
MIN_CLIP_SECONDS = 3.0


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


def validate_arguments(args: argparse.Namespace) -> None:
  """Checks the numeric arguments the commands share, before any work.

  :func:`merjax.cli.main` calls it for every command, so ``--workers 0`` or ``--devices -1``
  is refused the same way everywhere: one line, exit status 2.

  Raises:
    MerjaxError: naming the argument and the value given.
  """
  from merjax.errors import MerjaxError

  at_least_one = ("workers", "devices", "trials", "max_concurrent", "max_epochs", "num_cpus",
                  "sample_rate")
  for name in at_least_one:
    value = getattr(args, name, None)
    if value is not None and value < 1:
      raise MerjaxError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
  for name in ("seconds", "clip_seconds"):
    value = getattr(args, name, None)
    if value is not None and not value > 0:
      raise MerjaxError(f"--{name.replace('_', '-')} must be positive, got {value}")


def check_dataset(args: argparse.Namespace) -> None:
  """Refuses an unknown or unprepared ``--dataset`` before any work (e.g. before Ray starts)."""
  if args.dataset != "synthetic":
    from merjax.data.store import open_prepared
    open_prepared(args.dataset, args.data_dir)


def check_devices(devices: int | None) -> None:
  """Refuses a ``--devices`` count this process cannot see, before any work."""
  if devices is None:
    return
  import jax

  from merjax.errors import MerjaxError
  available = jax.device_count()
  if devices > available:
    raise MerjaxError(f"--devices {devices}: only {available} {jax.devices()[0].platform} "
                      f"device(s) available")


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
  if args.dataset == "synthetic" and args.clips_per_quadrant < 4:
    raise MerjaxError(f"--clips-per-quadrant must be at least 4 (one clip per split and some "
                      f"to train on), got {args.clips_per_quadrant}")
  seconds = getattr(args, "seconds", None)
  if seconds is None and args.dataset == "synthetic":
    seconds = 5.0
  if seconds is not None:
    if not seconds >= MIN_CLIP_SECONDS:
      raise MerjaxError(f"--seconds must be at least {MIN_CLIP_SECONDS:g} so the CNN's four "
                        f"pooling blocks have input left, got {seconds:g}")
    config = config.replace(audio=config.audio.replace(clip_seconds=seconds))
  stages = {}
  for name in ("cnn", "dnn", "fusion"):
    changes = {"seed": args.seed}
    if args.max_epochs is not None:
      changes["max_epochs"] = args.max_epochs
    stages[name] = config.stage(name).replace(**changes)
  return config.replace(augment=config.augment.replace(mode=args.augment, seed=args.seed),
                        seed=args.seed, **stages)
