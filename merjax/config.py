"""Configuration as code: frozen dataclasses with the paper's values as defaults.

One path from a dataset name to a run's configuration:

- :func:`preset_for` maps a dataset name to its Table 2 preset (Louro et al. 2024);
  :func:`paper_config` returns the paper's config for a dataset through it (or for a named
  preset), :func:`paper_hparams` one stage's row;
- :func:`with_overrides` applies ``section.field=value`` overrides, parsed against the field
  types (``merjax train --set cnn.batch_size=256``; the dedicated flags are sugar for it), the
  way flax examples and big_vision override a base config; :meth:`Config.replace` does the
  same in code;
- every check of a value is the dataclasses' own (``__post_init__``), raising
  :class:`~merjax.errors.MerjaxError`.

Seeds: :attr:`Config.seed` seeds the model side (initialisation, dropout, batch order, the
augmentation draws, the tuner's searcher); each of its consumers gets its own seed derived
by :func:`derive_seed`, and :class:`Config` writes those into its sections, so setting a
section's ``seed`` inside a ``Config`` has no effect. :attr:`Config.data_seed` seeds the data
(the synthetic set and its split), so runs can vary the model seed on fixed data.

References:
  Louro et al., "Improving Music Emotion Recognition by Leveraging Handcrafted and Learned
  Features", LAMIR 2024, Section 3 and Table 2; docs/method.md maps its rules to the code.
"""

from __future__ import annotations

import ast
import dataclasses
import types
import typing
from collections.abc import Iterable, Sequence
from typing import Any, Literal

import numpy as np

from merjax.errors import MerjaxError

QUADRANTS: tuple[str, ...] = ("Q1", "Q2", "Q3", "Q4")
# The dataset splits, in the order the paper uses them (70-15-15).
SPLITS: tuple[str, ...] = ("train", "validate", "test")
# The CNN's four augmentations (paper section 3.2), in the order that numbers their variants.
TRANSFORMS: tuple[str, ...] = ("time_shift", "pitch_shift", "time_stretch", "power_shift")
STAGES: tuple[str, ...] = ("cnn", "dnn", "fusion")
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
# Keras Tuner search space of the authors' group (docs/method.md).
LEARNING_RATES: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
BATCH_SIZES: tuple[int, ...] = (16, 32, 64, 128, 256)


class _Replaceable:
  def replace(self, **changes: Any):
    """Returns a copy with ``changes`` applied (fields are validated again)."""
    return dataclasses.replace(self, **changes)

  def to_dict(self) -> dict[str, Any]:
    return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class AudioConfig(_Replaceable):
  """Audio front end: decoding, clip length and the librosa-default mel spectrogram."""

  sample_rate: int = 16000
  clip_seconds: float = 30.0
  n_fft: int = 2048
  hop_length: int = 512
  n_mels: int = 128
  fmin: float = 0.0
  fmax: float | None = None
  # power_to_db (our choice, docs/method.md): ref=1.0 so that power shift survives.
  ref: float = 1.0
  amin: float = 1e-10
  top_db: float | None = 80.0

  def __post_init__(self):
    if self.sample_rate <= 0:
      raise MerjaxError(f"sample_rate must be positive, got {self.sample_rate}")
    if self.clip_seconds <= 0:
      raise MerjaxError(f"clip_seconds must be positive, got {self.clip_seconds}")
    if self.n_fft <= 0 or self.hop_length <= 0 or self.n_mels <= 0:
      raise MerjaxError(
          f"n_fft, hop_length and n_mels must be positive, got {self.n_fft}, "
          f"{self.hop_length}, {self.n_mels}")

  @property
  def clip_samples(self) -> int:
    return int(round(self.clip_seconds * self.sample_rate))

  @property
  def frames(self) -> int:
    """Mel frames of one clip with ``center=True``: ``1 + samples // hop``."""
    return 1 + self.clip_samples // self.hop_length


@dataclasses.dataclass(frozen=True)
class AugmentConfig(_Replaceable):
  """The paper's four waveform augmentations (CNN branch, training split only)."""

  mode: Literal["none", "offline", "online"] = "offline"
  transforms: tuple[str, ...] = TRANSFORMS
  max_shift_seconds: float = 5.0
  max_semitones: float = 2.0
  min_rate: float = 0.5
  max_rate: float = 1.5
  max_gain_db: float = 10.0
  # Derived from Config.seed inside a Config (derive_seed(seed, "augment")).
  seed: int = 0
  # Where the CNN's inputs are made (same results up to float rounding; merjax.batches.augmented).
  pipeline: Literal["auto", "precomputed", "waveforms"] = "auto"
  # Pitch shift's resampler: fft (exact, CPU), sinc (accelerators, ~1.5e-3 apart), auto.
  resampler: Literal["auto", "fft", "sinc"] = "auto"

  def __post_init__(self):
    if self.mode not in ("none", "offline", "online"):
      raise MerjaxError(f"augment mode must be none, offline or online, got {self.mode!r}")
    if self.pipeline not in ("auto", "precomputed", "waveforms"):
      raise MerjaxError(f"augment pipeline must be auto, precomputed or waveforms, got "
                       f"{self.pipeline!r}")
    if self.resampler not in ("auto", "fft", "sinc"):
      raise MerjaxError(f"resampler must be auto, fft or sinc, got {self.resampler!r}")
    known = set(TRANSFORMS)
    unknown = set(self.transforms) - known
    if unknown:
      raise MerjaxError(f"unknown augmentation(s) {sorted(unknown)}; known: {sorted(known)}")
    if not 0 < self.min_rate <= self.max_rate:
      raise MerjaxError(f"need 0 < min_rate <= max_rate, got {self.min_rate}, {self.max_rate}")


CNN_IMPLS: tuple[str, ...] = ("auto", "fast", "plain")
DTYPES: tuple[str, ...] = ("float32", "bfloat16")
# The CNN implementation "auto" picks per backend: the fastest measured there. The fused
# blocks win on XLA:CPU (7-8x, benchmarks/train.py); off CPU they are unmeasured and compile to
# about twice plain's FLOPs, so accelerators take XLA's own convolutions until a GPU/TPU
# measurement (benchmarks/accelerator.py) says otherwise.
_FASTEST_CNN_IMPL: dict[str, str] = {"cpu": "fast"}


def resolve_cnn_impl(impl: str, *, backend: str | None = None) -> str:
  """The CNN implementation that ``impl`` means on ``backend`` (default: JAX's default).

  Args:
    impl: ``"auto"``, ``"fast"`` or ``"plain"``.
    backend: ``"cpu"``, ``"gpu"``, ``"tpu"``, ...

  Returns:
    ``"fast"`` or ``"plain"``.
  """
  if impl != "auto":
    return impl
  if backend is None:
    import jax
    backend = jax.default_backend()
  return _FASTEST_CNN_IMPL.get(backend, "plain")


@dataclasses.dataclass(frozen=True)
class ModelConfig(_Replaceable):
  """Layer sizes of the three networks (the open widths: docs/method.md)."""

  n_classes: int = 4
  # CNN (Choi et al. 2016, as in the authors' group's Keras code).
  conv_filters: int = 32
  conv_pools: tuple[tuple[int, int], ...] = ((2, 2), (2, 2), (3, 2), (3, 2))  # (time, mel)
  conv_dropout: float = 0.1
  cnn_dense_dropout: float = 0.4
  cnn_embedding: int = 300
  batchnorm_momentum: float = 0.99  # Keras defaults
  batchnorm_epsilon: float = 1e-3
  # DNN on handcrafted features (our choice).
  dnn_hidden: tuple[int, ...] = (512, 256, 100)
  dnn_dropout: float = 0.3
  # Fusion classifier: three Dense layers, the last with n_classes outputs (our choice of widths).
  fusion_hidden: tuple[int, ...] = (200, 100)
  fusion_dropout: float = 0.3
  # Execution settings (a model trained with one value loads and predicts with another).
  # CNN: "plain" composes Flax's Conv, BatchNorm, Dropout and max-pool layers. "fast" runs the
  # same network with the same variables through merjax.models.kernels: each block's
  # conv-BatchNorm-dropout-pool as one op with an analytic backward pass (kernels.fused), its
  # convolutions in the forms XLA:CPU runs on all cores (kernels.conv) and dropout masks
  # bit-identical to Flax's from an unrolled Threefry (kernels.dropout). "auto" picks per
  # backend at trace time (resolve_cnn_impl: fast on CPU, plain elsewhere).
  cnn_impl: Literal["auto", "fast", "plain"] = "auto"
  # Compute dtype; params and BatchNorm statistics stay float32.
  dtype: Literal["float32", "bfloat16"] = "float32"

  def __post_init__(self):
    if len(self.conv_pools) < 1:
      raise MerjaxError("conv_pools needs at least one block")
    if self.cnn_impl not in CNN_IMPLS:
      raise MerjaxError(f"cnn_impl must be one of {CNN_IMPLS}, got {self.cnn_impl!r}")
    if self.dtype not in DTYPES:
      raise MerjaxError(f"dtype must be float32 or bfloat16, got {self.dtype!r}")


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Replaceable):
  """One stage's optimisation settings and the paper's stopping rules."""

  optimizer: str = "sgd"
  learning_rate: float = 1e-2
  batch_size: int = 32
  max_epochs: int = 200
  patience: int = 15
  train_accuracy_stop: float | None = 0.90
  # Initialisation, dropout and batch order; inside a Config derived from Config.seed
  # (derive_seed(seed, stage)), set here only for a TrainConfig used on its own.
  seed: int = 0

  def __post_init__(self):
    if self.optimizer not in OPTIMIZERS:
      raise MerjaxError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
    if not self.learning_rate > 0:
      raise MerjaxError(f"learning_rate must be positive, got {self.learning_rate}")
    if self.batch_size <= 0:
      raise MerjaxError(f"batch_size must be positive, got {self.batch_size}")
    if self.max_epochs <= 0:
      raise MerjaxError(f"max_epochs must be positive, got {self.max_epochs}")
    if self.patience <= 0:
      raise MerjaxError(f"patience must be positive, got {self.patience}")


@dataclasses.dataclass(frozen=True)
class TuneConfig(_Replaceable):
  """Bayesian search per stage (Keras Tuner protocol of the paper)."""

  trials: int = 10
  searcher: Literal["gp", "tpe", "random"] = "gp"
  # Random start-up trials, the lower-end first trial included; None: Keras Tuner's default of
  # 3 per hyperparameter (9 for optimizer, learning rate and batch size).
  startup_trials: int | None = None
  optimizers: tuple[str, ...] = OPTIMIZERS
  learning_rates: tuple[float, ...] = LEARNING_RATES
  batch_sizes: tuple[int, ...] = BATCH_SIZES
  max_concurrent: int = 1
  # The searcher's draws; inside a Config derived from Config.seed (derive_seed(seed, "tune")).
  seed: int = 0
  # Stages whose batch size is fixed (``--batch-size``) instead of searched: (stage, size).
  fixed_batch_sizes: tuple[tuple[str, int], ...] = ()

  def __post_init__(self):
    for stage, size in self.fixed_batch_sizes:
      if stage not in STAGES or size <= 0:
        raise MerjaxError(f"fixed batch size {stage}={size}: need a stage of {STAGES} and a "
                         "positive size")
    if self.trials < 1:
      raise MerjaxError(f"trials must be at least 1, got {self.trials}")
    if self.max_concurrent < 1:
      raise MerjaxError(f"max_concurrent must be at least 1, got {self.max_concurrent}")
    if self.searcher not in ("gp", "tpe", "random"):
      raise MerjaxError(f"searcher must be gp, tpe or random, got {self.searcher!r}")
    if self.startup_trials is not None and self.startup_trials < 1:
      raise MerjaxError(f"startup_trials must be at least 1, got {self.startup_trials}")


# Table 2 of the paper: (batch size, optimizer, learning rate) for the CNN, DNN and fusion stages.
_TABLE2: dict[str, dict[str, tuple[int, str, float]]] = {
    "merge_audio_complete": {"cnn": (32, "sgd", 1e-2), "dnn": (128, "sgd", 1e-2),
                             "fusion": (16, "adam", 1e-2)},
    "merge_audio_balanced": {"cnn": (32, "sgd", 1e-2), "dnn": (128, "adam", 1e-4),
                             "fusion": (32, "sgd", 1e-3)},
    "merge_bimodal_complete": {"cnn": (32, "sgd", 1e-2), "dnn": (128, "sgd", 1e-2),
                               "fusion": (64, "sgd", 1e-4)},
    "merge_bimodal_balanced": {"cnn": (32, "adam", 1e-3), "dnn": (32, "sgd", 1e-2),
                               "fusion": (64, "adam", 1e-3)},
}
PAPER_DATASETS: tuple[str, ...] = tuple(_TABLE2)
# The preset of a dataset outside MERGE (4QAED, folders, synthetic), which Table 2 does not
# cover: Audio Balanced, the paper's main dataset.
DEFAULT_PRESET = "merge_audio_balanced"


def preset_for(dataset: str) -> str:
  """The Table 2 preset of a dataset name: the one lookup every command and experiment uses.

  Args:
    dataset: a dataset name as the commands take it: ``merge:<subset>[:<split>]`` (both
      splits of a subset share its preset: ``merge:audio_complete:40_30_30`` ->
      ``merge_audio_complete``), a preset name (``merge_bimodal_balanced``), or any other
      dataset (``4qaed``, ``folder:NAME``, ``synthetic``), which gets :data:`DEFAULT_PRESET`.

  Returns:
    One of :data:`PAPER_DATASETS`.

  Raises:
    MerjaxError: a MERGE name without a Table 2 row (``merge:lyrics_balanced``,
      ``merge_audio``).
  """
  name = dataset.strip().lower()
  if name in _TABLE2:
    return name
  source, _, rest = name.partition(":")
  if source == "merge":
    preset = f"merge_{rest.partition(':')[0]}"
    if preset in _TABLE2:
      return preset
  elif not name.startswith("merge_"):
    return DEFAULT_PRESET
  raise MerjaxError(f"no Table 2 preset for dataset {dataset!r}; presets: "
                    f"{', '.join(PAPER_DATASETS)} (merge:<subset>[:<split>] takes its subset's)")


def paper_hparams(dataset: str, stage: str, **overrides: Any) -> TrainConfig:
  """The paper's best hyperparameters (Table 2) for one dataset and stage.

  Args:
    dataset: a preset or dataset name (:func:`preset_for`), e.g. ``"merge_audio_balanced"``
      or ``"merge:audio_balanced"``.
    stage: ``"cnn"``, ``"dnn"`` or ``"fusion"``.
    **overrides: any other :class:`TrainConfig` field (``max_epochs``, ...).

  Returns:
    A :class:`TrainConfig` with the paper's batch size, optimizer and learning rate.
  """
  if stage not in STAGES:
    raise MerjaxError(f"stage must be one of {STAGES}, got {stage!r}")
  batch_size, optimizer, learning_rate = _TABLE2[preset_for(dataset)][stage]
  return TrainConfig(optimizer=optimizer, learning_rate=learning_rate, batch_size=batch_size,
                     **overrides)


# Consumers of Config.seed, each with its own derived seed (derive_seed).
SEEDED: tuple[str, ...] = (*STAGES, "augment", "tune")


def derive_seed(seed: int, consumer: str) -> int:
  """The seed one consumer of :attr:`Config.seed` draws from.

  A pure function: ``SeedSequence([seed, SEEDED.index(consumer)])``'s first 31 bits, so the
  stages, the augmentation and the searcher draw independent streams from one seed, and equal
  seeds give equal runs (resume included).

  Args:
    seed: :attr:`Config.seed` (non-negative).
    consumer: one of :data:`SEEDED`: ``"cnn"``, ``"dnn"``, ``"fusion"`` (the stage's
      initialisation, dropout and batch order), ``"augment"`` (the augmentation draws) or
      ``"tune"`` (the searcher).

  Returns:
    A seed in ``[0, 2**31)``, usable by ``jax.random.key`` and ``numpy.random.default_rng``.
  """
  if consumer not in SEEDED:
    raise MerjaxError(f"no derived seed for {consumer!r}; consumers: {', '.join(SEEDED)}")
  state = np.random.SeedSequence([seed, SEEDED.index(consumer)]).generate_state(1)
  return int(state[0] >> 1)


@dataclasses.dataclass(frozen=True)
class Config(_Replaceable):
  """Everything a run needs; :func:`paper_config` and the ``experiment(...)`` functions return
  one of these.

  Attributes:
    seed: seeds the model side of a run: each stage's initialisation, dropout and batch order,
      the augmentation draws and the tuner's searcher, each from its own
      :func:`derive_seed` (written into ``cnn.seed``, ``dnn.seed``, ``fusion.seed``,
      ``augment.seed`` and ``tune.seed``, whatever those held).
    data_seed: seeds the data: the synthetic set and its 70-15-15 split. (Prepared datasets
      carry their split; ``merjax prepare --seed`` draws 4QAED's and a folder's.)
  """

  audio: AudioConfig = AudioConfig()
  augment: AugmentConfig = AugmentConfig()
  model: ModelConfig = ModelConfig()
  cnn: TrainConfig = paper_hparams(DEFAULT_PRESET, "cnn")
  dnn: TrainConfig = paper_hparams(DEFAULT_PRESET, "dnn")
  fusion: TrainConfig = paper_hparams(DEFAULT_PRESET, "fusion")
  tune: TuneConfig = TuneConfig()
  features_backend: str = "builtin"
  # With features_backend "table": the table the DNN trains on, as recorded by
  # merjax.features.source.table_record (path, sha256, columns, id_column).
  features_table: dict[str, Any] | None = None
  seed: int = 0
  data_seed: int = 0

  def __post_init__(self):
    for name in ("seed", "data_seed"):
      value = getattr(self, name)
      if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
        raise MerjaxError(f"{name} must be a non-negative integer, got {value!r}")
    for consumer in SEEDED:
      section = getattr(self, consumer)
      seed = derive_seed(self.seed, consumer)
      if section.seed != seed:
        object.__setattr__(self, consumer, section.replace(seed=seed))

  def stage(self, name: str) -> TrainConfig:
    if name not in STAGES:
      raise MerjaxError(f"stage must be one of {STAGES}, got {name!r}")
    return getattr(self, name)


def paper_config(dataset: str = DEFAULT_PRESET, *, preset: str | None = None) -> Config:
  """The full paper protocol for a dataset: Table 2's hyperparameters for each stage.

  Args:
    dataset: a dataset or preset name; its preset is :func:`preset_for`'s.
    preset: one of :data:`PAPER_DATASETS` to use instead (``merjax train --hparams``).

  Returns:
    The :class:`Config` with the preset's batch size, optimizer and learning rate per stage.
  """
  if preset is not None and preset not in _TABLE2:
    raise MerjaxError(f"unknown Table 2 preset {preset!r}; presets: {', '.join(PAPER_DATASETS)}")
  preset = preset or preset_for(dataset)
  return Config(**{stage: paper_hparams(preset, stage) for stage in STAGES})


_SECTIONS: dict[str, type] = {"audio": AudioConfig, "augment": AugmentConfig,
                              "model": ModelConfig, "cnn": TrainConfig, "dnn": TrainConfig,
                              "fusion": TrainConfig, "tune": TuneConfig}


def config_from_dict(data: dict[str, Any]) -> Config:
  """Inverse of ``Config.to_dict`` (used to reload a saved model directory's config)."""
  def tuples(value):
    if isinstance(value, list):
      return tuple(tuples(v) for v in value)
    return value

  kwargs = {}
  for key, value in data.items():
    if key in _SECTIONS:
      kwargs[key] = _SECTIONS[key](**{k: tuples(v) for k, v in value.items()})
    else:
      kwargs[key] = value
  return Config(**kwargs)


# -- overrides: ``section.field=value`` ------------------------------------------------------------

class Override(typing.NamedTuple):
  """One change to a :class:`Config`.

  Attributes:
    key: ``"section.field"`` (``"cnn.batch_size"``) or a top-level field (``"seed"``).
    value: text, parsed by the field's type (``"256"``, ``"0.2"``, ``"true"``, ``"none"``,
      ``"512,256"`` or ``"((2, 2), (3, 2))"`` for tuples), or a value of that type.
    source: how it was given, named in errors (default ``key=value``), e.g. ``"--trials 0"``.
  """

  key: str
  value: Any
  source: str | None = None


def parse_override(text: str) -> Override:
  """``"cnn.batch_size=256"`` -> ``Override("cnn.batch_size", "256")`` (``merjax ... --set``)."""
  key, equals, value = text.partition("=")
  if not equals or not key.strip():
    raise MerjaxError(f"--set expects KEY=VALUE (e.g. cnn.batch_size=256), got {text!r}")
  return Override(key.strip(), value.strip(), f"--set {text}")


# Top-level fields that only their own flags set (a feature table is read and recorded).
_FROM_FLAGS: dict[str, str] = {"features_backend": "--features", "features_table": "--table"}


def _settable(cls: type) -> dict[str, Any]:
  """The fields of ``cls`` an override may set (not sections, not derived seeds), typed."""
  hints = typing.get_type_hints(cls)
  skip = set(_SECTIONS) | set(_FROM_FLAGS) if cls is Config else {"seed"}
  return {field.name: hints[field.name] for field in dataclasses.fields(cls)
          if field.name not in skip}


def _describe(hint: Any) -> str:
  origin, args = typing.get_origin(hint), typing.get_args(hint)
  if origin is Literal:
    return "one of " + ", ".join(map(str, args))
  if origin in (types.UnionType, typing.Union):
    return " or ".join("none" if a is type(None) else _describe(a) for a in args)
  if origin is tuple:
    return "a tuple (comma-separated, or a Python literal)"
  return {int: "an integer", float: "a number", bool: "true or false", str: "text"}.get(
      hint, str(hint))


def _parse(value: Any, hint: Any, *, key: str) -> Any:
  """``value`` (text or a value) as a value of the field type ``hint``."""
  origin, args = typing.get_origin(hint), typing.get_args(hint)

  def bad():
    return MerjaxError(f"config key {key!r}: expected {_describe(hint)}, got {value!r}")

  if origin in (types.UnionType, typing.Union):
    if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
      if type(None) in args:
        return None
      raise bad()
    for arg in args:
      if arg is type(None):
        continue
      try:
        return _parse(value, arg, key=key)
      except MerjaxError:
        pass
    raise bad()
  if origin is Literal:
    if value in args:
      return value
    raise bad()
  if origin is tuple:
    if isinstance(value, str):
      text = value.strip()
      if text[:1] in "([":
        try:
          value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
          raise bad() from None
      else:
        value = [part.strip() for part in text.split(",") if part.strip()]
    if not isinstance(value, Iterable) or isinstance(value, str | dict):
      raise bad()
    items = list(value)
    if len(args) == 2 and args[1] is Ellipsis:
      return tuple(_parse(item, args[0], key=key) for item in items)
    if len(items) != len(args):
      raise bad()
    return tuple(_parse(item, arg, key=key) for item, arg in zip(items, args))
  if hint is bool:
    if isinstance(value, bool):
      return value
    words = {"true": True, "yes": True, "on": True, "1": True,
             "false": False, "no": False, "off": False, "0": False}
    if isinstance(value, str) and value.lower() in words:
      return words[value.lower()]
    raise bad()
  if hint in (int, float):
    numbers = int | np.integer if hint is int else int | float | np.number
    if isinstance(value, numbers) and not isinstance(value, bool):
      return hint(value)
    if not isinstance(value, str):
      raise bad()
    try:
      return hint(value)
    except ValueError:
      raise bad() from None
  if hint is str:
    if isinstance(value, str):
      return value
    raise bad()
  raise MerjaxError(f"config key {key!r} cannot be overridden")


def _unknown(key: str, level: str, names: Iterable[str]) -> MerjaxError:
  return MerjaxError(f"unknown config key {key!r}; {level} has: {', '.join(names)}")


def with_overrides(config: Config, overrides: Sequence[Override]) -> Config:
  """``config`` with ``overrides`` applied: the one path of every command-line setting.

  ``merjax train --set cnn.batch_size=256 --set model.dnn_dropout=0.2`` and the dedicated
  flags (``--batch-size``, ``--max-epochs``, ``--seed``, ...) all arrive here, so a new
  :class:`Config` field can be set from the command line with no new flag. Later overrides of
  a key win. The sections check their values (``__post_init__``); a refused value is named
  with the override that gave it.

  Args:
    config: the base config (e.g. :func:`paper_config`).
    overrides: :class:`Override` s; keys ``section.field`` (sections ``audio``, ``augment``,
      ``model``, ``cnn``, ``dnn``, ``fusion``, ``tune``), ``seed`` or ``data_seed``.

  Returns:
    The new :class:`Config`.

  Raises:
    MerjaxError: an unknown key (listing the keys at its level), a section's derived
      ``seed``, a value that does not parse as the field's type, or one the config refuses.
  """
  sections: dict[str, dict[str, Any]] = {}
  top: dict[str, Any] = {}
  sources: dict[str, list[str]] = {}
  top_fields = _settable(Config)
  for override in overrides:
    key = override.key
    source = override.source or f"{key}={override.value}"
    section, dot, field = key.partition(".")
    if not dot:
      if key in _FROM_FLAGS:
        raise MerjaxError(f"config key {key!r} is set with {_FROM_FLAGS[key]}")
      if key not in top_fields:
        raise _unknown(key, "the config", [*top_fields, *(f"{s}.*" for s in _SECTIONS)])
      top[key] = _parse(override.value, top_fields[key], key=key)
      sources.setdefault("", []).append(source)
      continue
    if section not in _SECTIONS:
      raise _unknown(key, "the config", [*top_fields, *(f"{s}.*" for s in _SECTIONS)])
    fields = _settable(_SECTIONS[section])
    if field == "seed" and section in SEEDED:
      raise MerjaxError(f"config key {key!r} is derived from 'seed' (merjax.config.derive_seed); "
                        "set seed (the model side) or data_seed (the data) instead")
    if field not in fields:
      raise _unknown(key, section, fields)
    sections.setdefault(section, {})[field] = _parse(override.value, fields[field], key=key)
    sources.setdefault(section, []).append(source)

  def refused(where: str, error: MerjaxError) -> MerjaxError:
    return MerjaxError(f"{', '.join(dict.fromkeys(sources[where]))}: {error}")

  changed: dict[str, Any] = {}
  for section, changes in sections.items():
    try:
      changed[section] = getattr(config, section).replace(**changes)
    except MerjaxError as error:
      raise refused(section, error) from None
  try:
    return config.replace(**changed, **top)
  except MerjaxError as error:
    raise refused("", error) from None
