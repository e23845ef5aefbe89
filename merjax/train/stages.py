"""The three training stages of the hybrid method (Louro et al. 2024, Section 3.3).

1. the CNN with its own head on (augmented) log-mels;
2. the DNN with its own head on the handcrafted features;
3. both branches frozen (inference mode, no gradients), heads dropped, the fusion classifier
   trained on the concatenated embeddings. Frozen branches make the embeddings a fixed
   function of each clip, so they are computed once and the fusion trains on them.

One way to build a stage, shared by ``merjax train``, the demo, the experiment runners
(:func:`train_hybrid`) and the tuner's trials (:func:`merjax.tune.trial.run_trial`):
:func:`stage_network` (which network), :func:`stage_splits` (its training and validation
inputs, with :func:`frozen_embeddings` for the fusion) and :func:`train_classifier` (state,
batches and :func:`merjax.train.fit` over a mesh, with the caller's hooks).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from merjax import parallel
from merjax.batches.augmented import CNNTraining
from merjax.batches.protocol import Batches
from merjax.batches.split import split_batches
from merjax.config import STAGES, Config, ModelConfig, TrainConfig
from merjax.inference.artefact import HybridModel
from merjax.models import CNN, DNN, Fusion
from merjax.train.fit import EpochHook, FitResult, fit
from merjax.train.state import TrainState, create_state
from merjax.train.stopping import EarlyStopping

Split = Mapping[str, np.ndarray]  # {"inputs": [shape=(n, ...)], "label": [shape=(n,)]}
# A restored run's start: ``fresh state -> (state, stopper)`` (e.g. a tune trial's checkpoint).
Resume = Callable[[TrainState], tuple[TrainState, EarlyStopping]]

_NETWORKS = {"cnn": CNN, "dnn": DNN, "fusion": Fusion}


@dataclasses.dataclass(frozen=True, eq=False)
class StageData:
  """Inputs of the three stages, keyed by split name (``train``, ``validate``, ...).

  Attributes:
    mels: normalised log-mels per split.
    features: preprocessed features per split.
    labels: quadrant labels per split.
    cnn_train_mels, cnn_train_labels: the offline-augmented training set of the CNN, which
      replaces its training split.
    cnn_training: the CNN's training input built per run (online augmentation, or the clips of
      the ``waveforms`` pipeline), see :mod:`merjax.batches.augmented`.
  """

  mels: dict[str, np.ndarray]
  features: dict[str, np.ndarray]
  labels: dict[str, np.ndarray]
  cnn_train_mels: np.ndarray | None = None
  cnn_train_labels: np.ndarray | None = None
  cnn_training: CNNTraining | None = None


def stage_network(stage: str, model: ModelConfig):
  """The Flax classifier a stage trains: ``cnn`` -> CNN, ``dnn`` -> DNN, ``fusion`` -> Fusion
  (on the frozen branches' embeddings)."""
  if stage not in _NETWORKS:
    raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
  return _NETWORKS[stage](model)


def frozen_embeddings(data: StageData, *, config: Config, cnn: Mapping, dnn: Mapping,
                      splits: Sequence[str] = ("train", "validate")) -> dict[str, np.ndarray]:
  """The fusion stage's inputs: the frozen branches' embeddings of each split.

  Args:
    data: the stage inputs.
    config: the run's configuration (its network sizes).
    cnn, dnn: the trained branches' variables.
    splits: which splits to embed.

  Returns:
    ``{split: [shape=(n, cnn_embedding + dnn_embedding)]}``.
  """
  frozen = HybridModel(config=config, cnn=cnn, dnn=dnn, fusion={}, mel_mean=0.0, mel_std=1.0)
  return {split: frozen.embeddings(mels=data.mels[split], features=data.features[split])
          for split in splits}


def stage_splits(data: StageData, stage: str, *,
                 embeddings: Mapping[str, np.ndarray] | None = None) -> dict[str, Split]:
  """The training and validation inputs of one stage.

  Args:
    data: the stage inputs; the CNN's offline-augmented training set, when present, replaces
      its training split (augmentation only ever reaches the CNN).
    stage: ``"cnn"``, ``"dnn"`` or ``"fusion"``.
    embeddings: for the fusion stage, :func:`frozen_embeddings`.

  Returns:
    ``{"train": {"inputs", "label"}, "validate": {"inputs", "label"}}``.
  """
  inputs: Mapping[str, np.ndarray]
  labels: Mapping[str, np.ndarray]
  if stage == "cnn":
    inputs, labels = data.mels, data.labels
    if data.cnn_train_mels is not None and data.cnn_train_labels is not None:
      inputs = {**inputs, "train": data.cnn_train_mels}
      labels = {**labels, "train": data.cnn_train_labels}
  elif stage == "dnn":
    inputs, labels = data.features, data.labels
  elif stage == "fusion":
    if embeddings is None:
      raise ValueError("the fusion stage needs the branch embeddings")
    inputs, labels = embeddings, data.labels
  else:
    raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
  return {split: {"inputs": inputs[split], "label": labels[split]}
          for split in ("train", "validate")}


def stage_keys(config: TrainConfig) -> tuple[jax.Array, jax.Array]:
  """A stage's ``(initialisation key, run key)``, both from ``config.seed``.

  The run key is what :func:`merjax.train.fit` folds each step into for dropout, and what a
  run's checkpoint saves.
  """
  init_rng, run_rng = jax.random.split(jax.random.key(config.seed))
  return init_rng, run_rng


def train_classifier(network, *, train: Split, val: Split, config: TrainConfig, mesh: Mesh,
                     stage: str, log: Callable[[str], Any] | None = print,
                     hooks: Sequence[EpochHook] = (), workdir: str | os.PathLike | None = None,
                     resume: Resume | None = None, cnn_training: CNNTraining | None = None,
                     device_memory_gb: float | None = None,
                     variables: dict[str, Any] | None = None) -> FitResult:
  """Creates the state and the batches of one stage and fits it under the paper's rules.

  ``config.batch_size`` is the global batch, split across the mesh's devices, so the result
  equals a one-device run up to float rounding.

  Args:
    network: a module called as ``network(inputs, train=..., mask=...)`` returning logits,
      e.g. :func:`stage_network`'s.
    train: training inputs and integer labels (only the input shape, with ``cnn_training``).
    val: validation inputs and labels (the stopping rules watch its accuracy).
    config: batch size, optimizer, learning rate, stopping rules and seed.
    mesh: the data mesh (:func:`merjax.parallel.resolve_mesh`); the batch size must divide
      across its devices.
    stage: name used in logs, errors and the work dir's recorded settings.
    log: per-epoch log sink, ``None`` for silence.
    hooks: called after every epoch (:data:`merjax.train.fit.EpochHook`).
    workdir: checkpoint every epoch here and resume from it (:func:`merjax.train.fit`).
    resume: starts from a restored state and stopper instead of the fresh ones.
    cnn_training: the CNN's training batches and its ``apply_fn`` front end come from here
      (online augmentation, or the ``waveforms`` pipeline) instead of ``train``.
    device_memory_gb: GiB per device the resident splits may take; larger splits stream
      (:func:`merjax.batches.split.split_batches`; default: from the device's memory).
    variables: start from these variables instead of initialising (see :func:`create_state`).

  Returns:
    The :class:`FitResult` with the best validation epoch's state.
  """
  init_rng, dropout_rng = stage_keys(config)
  state = create_state(network, jnp.asarray(train["inputs"][:1]), config,
                       rng=init_rng if variables is None else None, variables=variables)
  stopper = None
  if cnn_training is not None:
    state = state.replace(apply_fn=cnn_training.front_end(state.apply_fn, mesh=mesh))
  if resume is not None:
    state, stopper = resume(state)
  train_batches: Batches
  if cnn_training is not None:
    train_batches = cnn_training.batches(batch_size=config.batch_size, seed=config.seed,
                                         mesh=mesh, device_memory_gb=device_memory_gb)
  else:
    say = (None if log is None or jax.process_index() != 0
           else lambda line: log(f"[{stage}] training split: {line}"))
    train_batches = split_batches(dict(train), batch_size=config.batch_size, shuffle=True,
                                  seed=config.seed, mesh=mesh, device_memory_gb=device_memory_gb,
                                  log=say)
  # Evaluation pads with a mask, so its batch only needs rounding up to the device count.
  val_batches = split_batches(
      dict(val), batch_size=parallel.round_up(config.batch_size, parallel.data_size(mesh)),
      shuffle=False, mesh=mesh, device_memory_gb=device_memory_gb)
  return fit(state, train_batches=train_batches.epoch, val_batches=val_batches.epoch,
             config=config, rng=dropout_rng, mesh=mesh, stage=stage, log=log, stopper=stopper,
             hooks=hooks, workdir=workdir)


def train_hybrid(data: StageData, *, config: Config, mesh: Mesh, mel_mean: float,
                 mel_std: float, feature_preprocessor: Any = None,
                 log: Callable[[str], Any] | None = print,
                 workdir: str | os.PathLike | None = None,
                 device_memory_gb: float | None = None
                 ) -> tuple[HybridModel, dict[str, FitResult]]:
  """Runs the three stages and returns the trained hybrid and each stage's fit.

  Args:
    data: normalised inputs and labels; ``cnn_train_*`` replace the CNN's training split
      when the paper's augmentation is on, and ``cnn_training`` makes the CNN stage build its
      batches per run (online augmentation, or the clips augmented inside its jitted step).
    config: model and per-stage training settings.
    mesh: the data mesh of every stage (see :func:`train_classifier`).
    mel_mean, mel_std: recorded in the returned model for inference.
    feature_preprocessor: recorded in the returned model for inference.
    log: progress sink.
    workdir: when given, each stage checkpoints to (and resumes from) ``workdir/<stage>``.
    device_memory_gb: GiB per device a resident split may take (see :func:`train_classifier`).

  Returns:
    ``(model, {"cnn": FitResult, "dnn": FitResult, "fusion": FitResult})``.
  """
  fits: dict[str, FitResult] = {}
  embeddings = None
  for stage in STAGES:
    if stage == "fusion":
      embeddings = frozen_embeddings(data, config=config, cnn=fits["cnn"].state.variables,
                                     dnn=fits["dnn"].state.variables)
    splits = stage_splits(data, stage, embeddings=embeddings)
    fits[stage] = train_classifier(
        stage_network(stage, config.model), train=splits["train"], val=splits["validate"],
        config=config.stage(stage), mesh=mesh, stage=stage, log=log,
        workdir=None if workdir is None else os.path.join(os.fspath(workdir), stage),
        cnn_training=data.cnn_training if stage == "cnn" else None,
        device_memory_gb=device_memory_gb)
  model = HybridModel(config=config, cnn=fits["cnn"].state.variables,
                      dnn=fits["dnn"].state.variables, fusion=fits["fusion"].state.variables,
                      mel_mean=mel_mean, mel_std=mel_std,
                      feature_preprocessor=feature_preprocessor)
  return model, fits
