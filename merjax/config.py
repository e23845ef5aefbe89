"""Configuration as code: frozen dataclasses with the paper's values as defaults.

Variants are made with :func:`dataclasses.replace` (or :meth:`Config.replace`), the way
flax examples override a base config. Table 2 of Louro et al. (2024) is available through
:func:`paper_hparams`.

References:
  Louro et al., "Improving Music Emotion Recognition by Leveraging Handcrafted and Learned
  Features", LAMIR 2024, Section 3 and Table 2; docs/method.md maps its rules to the code.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

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
      raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
    if self.clip_seconds <= 0:
      raise ValueError(f"clip_seconds must be positive, got {self.clip_seconds}")
    if self.n_fft <= 0 or self.hop_length <= 0 or self.n_mels <= 0:
      raise ValueError(
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
  seed: int = 0
  # Where the CNN's inputs are made (same results up to float rounding; merjax.batches.augmented).
  pipeline: Literal["auto", "precomputed", "waveforms"] = "auto"
  # Pitch shift's resampler: fft (exact, CPU), sinc (accelerators, ~1.5e-3 apart), auto.
  resampler: Literal["auto", "fft", "sinc"] = "auto"

  def __post_init__(self):
    if self.mode not in ("none", "offline", "online"):
      raise ValueError(f"augment mode must be none, offline or online, got {self.mode!r}")
    if self.pipeline not in ("auto", "precomputed", "waveforms"):
      raise ValueError(f"augment pipeline must be auto, precomputed or waveforms, got "
                       f"{self.pipeline!r}")
    if self.resampler not in ("auto", "fft", "sinc"):
      raise ValueError(f"resampler must be auto, fft or sinc, got {self.resampler!r}")
    known = set(TRANSFORMS)
    unknown = set(self.transforms) - known
    if unknown:
      raise ValueError(f"unknown augmentation(s) {sorted(unknown)}; known: {sorted(known)}")
    if not 0 < self.min_rate <= self.max_rate:
      raise ValueError(f"need 0 < min_rate <= max_rate, got {self.min_rate}, {self.max_rate}")


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
  # CNN blocks: "fast" fuses each block into one op with an analytic backward pass
  # (merjax.models.kernels.fused, measured faster on CPU only); "plain" composes Flax's layers;
  # "auto" picks per backend at trace time (resolve_cnn_impl).
  cnn_impl: Literal["auto", "fast", "plain"] = "auto"
  # Compute dtype; params and BatchNorm statistics stay float32.
  dtype: Literal["float32", "bfloat16"] = "float32"

  def __post_init__(self):
    if len(self.conv_pools) < 1:
      raise ValueError("conv_pools needs at least one block")
    if self.cnn_impl not in CNN_IMPLS:
      raise ValueError(f"cnn_impl must be one of {CNN_IMPLS}, got {self.cnn_impl!r}")
    if self.dtype not in DTYPES:
      raise ValueError(f"dtype must be float32 or bfloat16, got {self.dtype!r}")


@dataclasses.dataclass(frozen=True)
class TrainConfig(_Replaceable):
  """One stage's optimisation settings and the paper's stopping rules."""

  optimizer: str = "sgd"
  learning_rate: float = 1e-2
  batch_size: int = 32
  max_epochs: int = 200
  patience: int = 15
  train_accuracy_stop: float | None = 0.90
  seed: int = 0

  def __post_init__(self):
    if self.optimizer not in OPTIMIZERS:
      raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
    if not self.learning_rate > 0:
      raise ValueError(f"learning_rate must be positive, got {self.learning_rate}")
    if self.batch_size <= 0:
      raise ValueError(f"batch_size must be positive, got {self.batch_size}")
    if self.max_epochs <= 0:
      raise ValueError(f"max_epochs must be positive, got {self.max_epochs}")
    if self.patience <= 0:
      raise ValueError(f"patience must be positive, got {self.patience}")


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
  seed: int = 0
  # Stages whose batch size is fixed (``--batch-size``) instead of searched: (stage, size).
  fixed_batch_sizes: tuple[tuple[str, int], ...] = ()

  def __post_init__(self):
    for stage, size in self.fixed_batch_sizes:
      if stage not in STAGES or size <= 0:
        raise ValueError(f"fixed batch size {stage}={size}: need a stage of {STAGES} and a "
                         "positive size")
    if self.trials <= 0:
      raise ValueError(f"trials must be positive, got {self.trials}")
    if self.searcher not in ("gp", "tpe", "random"):
      raise ValueError(f"searcher must be gp, tpe or random, got {self.searcher!r}")
    if self.startup_trials is not None and self.startup_trials < 1:
      raise ValueError(f"startup_trials must be at least 1, got {self.startup_trials}")


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


def paper_hparams(dataset: str, stage: str, **overrides: Any) -> TrainConfig:
  """The paper's best hyperparameters (Table 2) for one dataset and stage.

  Args:
    dataset: one of :data:`PAPER_DATASETS`, e.g. ``"merge_audio_balanced"``
      (``"merge:audio_balanced"`` is accepted too).
    stage: ``"cnn"``, ``"dnn"`` or ``"fusion"``.
    **overrides: any other :class:`TrainConfig` field (``max_epochs``, ``seed``, ...).

  Returns:
    A :class:`TrainConfig` with the paper's batch size, optimizer and learning rate.
  """
  key = dataset.replace(":", "_").lower()
  if key not in _TABLE2:
    raise ValueError(f"no Table 2 preset for dataset {dataset!r}; known: {list(PAPER_DATASETS)}")
  if stage not in STAGES:
    raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
  batch_size, optimizer, learning_rate = _TABLE2[key][stage]
  return TrainConfig(optimizer=optimizer, learning_rate=learning_rate, batch_size=batch_size,
                     **overrides)


@dataclasses.dataclass(frozen=True)
class Config(_Replaceable):
  """Everything a run needs; ``experiment(...)`` functions return one of these."""

  audio: AudioConfig = AudioConfig()
  augment: AugmentConfig = AugmentConfig()
  model: ModelConfig = ModelConfig()
  cnn: TrainConfig = paper_hparams("merge_audio_balanced", "cnn")
  dnn: TrainConfig = paper_hparams("merge_audio_balanced", "dnn")
  fusion: TrainConfig = paper_hparams("merge_audio_balanced", "fusion")
  tune: TuneConfig = TuneConfig()
  features_backend: str = "builtin"
  # With features_backend "table": the table the DNN trains on, as recorded by
  # merjax.features.source.table_record (path, sha256, columns, id_column).
  features_table: dict[str, Any] | None = None
  seed: int = 0

  def stage(self, name: str) -> TrainConfig:
    if name not in STAGES:
      raise ValueError(f"stage must be one of {STAGES}, got {name!r}")
    return getattr(self, name)


def paper_config(dataset: str = "merge_audio_balanced") -> Config:
  """The full paper protocol for one MERGE dataset (Table 2 hyperparameters per stage)."""
  return Config(**{stage: paper_hparams(dataset, stage) for stage in STAGES})


def config_from_dict(data: dict[str, Any]) -> Config:
  """Inverse of ``Config.to_dict`` (used to reload a saved model directory's config)."""
  def tuples(value):
    if isinstance(value, list):
      return tuple(tuples(v) for v in value)
    return value

  sections = {"audio": AudioConfig, "augment": AugmentConfig, "model": ModelConfig,
              "cnn": TrainConfig, "dnn": TrainConfig, "fusion": TrainConfig, "tune": TuneConfig}
  kwargs = {}
  for key, value in data.items():
    if key in sections:
      kwargs[key] = sections[key](**{k: tuples(v) for k, v in value.items()})
    else:
      kwargs[key] = value
  return Config(**kwargs)
