"""Arguments shared by several commands, and the config they select."""

from __future__ import annotations

import argparse

from merjax.config import CNN_IMPLS, DTYPES, STAGES, Config, Override

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
                      "the dataset's own for MERGE (either split), else merge_audio_balanced")
  parser.add_argument("--augment", choices=("none", "offline", "online"), default="offline",
                      help="CNN-branch augmentation: offline is the paper's x5 set, online draws "
                      "fresh parameters every epoch (default: %(default)s)")
  parser.add_argument("--max-epochs", type=int, default=None,
                      help="cap on epochs per stage (default: the paper's 200)")
  add_seed_argument(parser)
  parser.add_argument("--workers", type=int, default=None,
                      help="feature-extraction processes (default: cores, at most 4)")


def add_seed_argument(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--seed", type=int, default=0,
                      help="model seed: each stage's initialisation, dropout and batch order, the "
                      "augmentation and the searcher draw from it; the data (synthetic set and "
                      "split) from --set data_seed=N (default: 0)")


def add_set_argument(parser: argparse.ArgumentParser) -> None:
  """``--set KEY=VALUE``: any config field, the path every other config flag takes too."""
  parser.add_argument("--set", action="append", default=[], dest="overrides",
                      metavar="KEY=VALUE",
                      help="set any config field, e.g. --set cnn.batch_size=256 --set "
                      "model.dnn_dropout=0.2 --set data_seed=3 (repeatable, applied after the "
                      "other flags; sections: audio, augment, model, cnn, dnn, fusion, tune)")


def add_execution_arguments(parser: argparse.ArgumentParser) -> None:
  """``--batch-size``, ``--dtype`` and ``--cnn-impl``: how a run executes, for pods and GPUs."""
  group = parser.add_argument_group("execution")
  group.add_argument("--batch-size", default=None, metavar="N|STAGE=N,...",
                     help="global batch size, split over every device of every process: one "
                     "number for all stages, or per stage as cnn=256,dnn=512,fusion=256 "
                     "(default: the dataset's Table 2 value per stage; on many devices it must "
                     "be a multiple of the device count)")
  add_model_execution_arguments(group)
  group.add_argument("--cnn-inputs", choices=("auto", "precomputed", "waveforms"), default=None,
                     help="where the CNN's (augmented) log-mels are made: precomputed before "
                     "training, or from the clips inside the jitted training step on the "
                     "devices; auto: waveforms on accelerators, precomputed on CPU (default)")


def add_model_execution_arguments(group) -> None:
  """``--dtype`` and ``--cnn-impl``, which a trained model also takes when it predicts."""
  group.add_argument("--dtype", choices=DTYPES, default=None,
                     help="compute dtype; parameters, BatchNorm statistics and the loss stay "
                     "float32 (default: float32)")
  group.add_argument("--cnn-impl", choices=CNN_IMPLS, default=None,
                     help="CNN blocks: fast (fused, analytic backward), plain (Flax layers) or "
                     "auto, the fastest measured on the backend: fast on CPU, plain on GPU/TPU "
                     "(default: auto)")


def parse_batch_sizes(text: str) -> dict[str, int]:
  """Parses ``--batch-size``: ``"256"`` (every stage) or ``"cnn=256,dnn=512"``.

  Returns:
    ``{stage: global batch size}`` for the stages named (all three for a bare number).

  Raises:
    MerjaxError: an unknown stage, a repeated stage, or a size that is not a positive integer.
  """
  from merjax.config import STAGES
  from merjax.errors import MerjaxError

  def size(value: str, what: str) -> int:
    try:
      number = int(value)
    except ValueError:
      number = 0
    if number <= 0:
      raise MerjaxError(f"--batch-size {what}: expected a positive integer, got {value!r}")
    return number

  text = text.strip()
  if "=" not in text:
    return {stage: size(text, "") for stage in STAGES}
  sizes: dict[str, int] = {}
  for part in text.split(","):
    stage, _, value = part.partition("=")
    stage = stage.strip()
    if stage not in STAGES:
      raise MerjaxError(f"--batch-size: unknown stage {stage!r} in {text!r}; stages are "
                        f"{', '.join(STAGES)}")
    if stage in sizes:
      raise MerjaxError(f"--batch-size names stage {stage!r} twice in {text!r}")
    sizes[stage] = size(value.strip(), f"{stage}")
  return sizes


def validate_arguments(args: argparse.Namespace) -> None:
  """Checks the numeric arguments the commands share that are not config fields, before any
  work (a config field's value is checked by the config: :func:`config_from_args`).

  :func:`merjax.cli.main` calls it for every command, so ``--workers 0`` or ``--devices -1``
  is refused the same way everywhere: one line, exit status 2.

  Raises:
    MerjaxError: naming the argument and the value given.
  """
  from merjax.errors import MerjaxError

  at_least_one = ("workers", "devices", "num_cpus", "sample_rate")
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


# Flags that are sugar for config keys: (argument, flag, keys it sets).
_CONFIG_FLAGS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("seed", "--seed", ("seed",)),
    ("seconds", "--seconds", ("audio.clip_seconds",)),
    ("augment", "--augment", ("augment.mode",)),
    ("cnn_inputs", "--cnn-inputs", ("augment.pipeline",)),
    ("dtype", "--dtype", ("model.dtype",)),
    ("cnn_impl", "--cnn-impl", ("model.cnn_impl",)),
    ("max_epochs", "--max-epochs", tuple(f"{stage}.max_epochs" for stage in STAGES)),
    ("trials", "--trials", ("tune.trials",)),
    ("searcher", "--searcher", ("tune.searcher",)),
    ("startup_trials", "--startup-trials", ("tune.startup_trials",)),
    ("max_concurrent", "--max-concurrent", ("tune.max_concurrent",)),
)


def flag_overrides(args: argparse.Namespace) -> list[Override]:
  """The overrides that the command line's config flags and ``--set`` stand for, in order.

  Every flag of :data:`_CONFIG_FLAGS` the command has and the user gave, ``--batch-size``
  (each stage's batch size; in ``merjax tune`` also taken out of the search), then each
  ``--set KEY=VALUE``.
  """
  from merjax.config import parse_override

  overrides = []
  for name, flag, keys in _CONFIG_FLAGS:
    value = getattr(args, name, None)
    if value is not None:
      overrides += [Override(key, value, f"{flag} {value}") for key in keys]
  batch_text = getattr(args, "batch_size", None)
  if batch_text:
    sizes = parse_batch_sizes(batch_text)
    source = f"--batch-size {batch_text}"
    overrides += [Override(f"{stage}.batch_size", size, source) for stage, size in sizes.items()]
    if getattr(args, "searched", False):  # merjax tune: a fixed batch size is not searched
      overrides.append(Override("tune.fixed_batch_sizes", tuple(sizes.items()), source))
  return overrides + [parse_override(text) for text in getattr(args, "overrides", ())]


def config_from_args(args: argparse.Namespace) -> Config:
  """The paper config for ``--dataset`` (or ``--hparams``' preset) with the command line's
  flags and ``--set`` overrides (:func:`merjax.config.with_overrides`), and its features."""
  from merjax.config import paper_config, with_overrides
  from merjax.errors import MerjaxError

  if args.dataset == "synthetic" and args.clips_per_quadrant < 4:
    raise MerjaxError(f"--clips-per-quadrant must be at least 4 (one clip per split and some "
                      f"to train on), got {args.clips_per_quadrant}")
  seconds = getattr(args, "seconds", None)
  if seconds is not None and not seconds >= MIN_CLIP_SECONDS:
    raise MerjaxError(f"--seconds must be at least {MIN_CLIP_SECONDS:g} so the CNN's four "
                      f"pooling blocks have input left, got {seconds:g}")
  short = (args.dataset == "synthetic" and seconds is None)  # synthetic clips: 5 s by default
  defaults = [Override("audio.clip_seconds", 5.0, "--seconds 5")] if short else []
  config = with_overrides(paper_config(args.dataset, preset=getattr(args, "hparams", None)),
                          [*defaults, *flag_overrides(args)])
  from merjax.features.source import features_config
  return features_config(config, features=getattr(args, "features", None),
                         table=getattr(args, "table", None),
                         id_column=getattr(args, "id_column", None))
