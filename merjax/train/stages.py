"""The three training stages of the hybrid method (Louro et al. 2024, Section 3.3).

1. the CNN with its own head on (augmented) log-mels;
2. the DNN with its own head on the handcrafted features;
3. both branches frozen (inference mode, no gradients), heads dropped, the fusion classifier
   trained on the concatenated embeddings. Frozen branches make the embeddings a fixed
   function of each clip, so they are computed once and the fusion trains on them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from merjax import parallel
from merjax.batches.split import split_batches
from merjax.config import Config, TrainConfig
from merjax.inference.artefact import HybridModel
from merjax.models import CNN, DNN, Fusion
from merjax.train.fit import FitResult, fit
from merjax.train.state import create_state

Split = Mapping[str, np.ndarray]  # {"inputs": [shape=(n, ...)], "label": [shape=(n,)]}


def train_classifier(model, *, train: Split, val: Split, config: TrainConfig, stage: str,
                     log: Callable[[str], Any] | None = print, mesh: Any = "auto",
                     train_batches: Callable[[int], Any] | None = None,
                     device_memory_gb: float | None = None,
                     wrap_apply: Callable[[Callable], Callable] | None = None,
                     variables: dict[str, Any] | None = None, **fit_kwargs) -> FitResult:
  """Trains one Flax classifier with the paper's protocol on in-memory splits.

  With several devices the run is data-parallel: ``config.batch_size`` is the global batch,
  split across the devices, so the result equals a one-device run up to float rounding.

  Args:
    model: a module called as ``model(inputs, train=..., mask=...)`` returning logits.
    train: training inputs and integer labels.
    val: validation inputs and labels (the stopping rules watch its accuracy).
    config: batch size, optimizer, learning rate, stopping rules and seed.
    stage: name used in logs and errors.
    log: per-epoch log sink, ``None`` for silence.
    mesh: ``"auto"`` (data-parallel over all devices when there are several), a device
      count, a :class:`jax.sharding.Mesh`, or None (single device); see
      :func:`merjax.parallel.resolve_mesh`. The batch size must divide across the devices.
    train_batches: optional ``epoch -> batches`` replacing the batches of ``train`` (e.g.
      online augmentation); ``train`` then only gives the input shape.
    device_memory_gb: GiB per device the resident splits may take; larger splits stream
      (:func:`merjax.batches.split.split_batches`; default: from the device's memory).
    wrap_apply: optional ``apply_fn -> apply_fn`` for the train state, e.g.
      :meth:`merjax.batches.augmented.WaveformTraining.front_end` (waveforms in, log-mels made
      inside the jitted step).
    variables: start from these variables instead of initialising (see :func:`create_state`).
    **fit_kwargs: passed to :func:`merjax.train.fit` (``on_epoch_end``, ``stopper``,
      ``workdir``).

  Returns:
    The :class:`FitResult` with the best validation epoch's state.
  """
  mesh = parallel.resolve_mesh(mesh)
  rng = jax.random.key(config.seed)
  init_rng, dropout_rng = jax.random.split(rng)
  state = create_state(model, jnp.asarray(train["inputs"][:1]), config,
                       rng=init_rng if variables is None else None, variables=variables)
  if wrap_apply is not None:
    state = state.replace(apply_fn=wrap_apply(state.apply_fn))
  if train_batches is None:
    say = (None if log is None or jax.process_index() != 0
           else lambda line: log(f"[{stage}] training split: {line}"))
    train_batches = split_batches(dict(train), batch_size=config.batch_size, shuffle=True,
                                  seed=config.seed, mesh=mesh, device_memory_gb=device_memory_gb,
                                  log=say).epoch
  # Evaluation pads with a mask, so its batch only needs rounding up to the device count.
  val_batch = (config.batch_size if mesh is None
               else parallel.round_up(config.batch_size, parallel.data_size(mesh)))
  val_data = split_batches(dict(val), batch_size=val_batch, shuffle=False, mesh=mesh,
                           device_memory_gb=device_memory_gb)
  return fit(state, train_batches=train_batches, val_batches=val_data.epoch, config=config,
             rng=dropout_rng, stage=stage, log=log, mesh=mesh, **fit_kwargs)


@dataclasses.dataclass
class StageData:
  """Inputs of the three stages, keyed by split name (``train``, ``validate``, ...)."""

  mels: dict[str, np.ndarray]       # normalised log-mels per split
  features: dict[str, np.ndarray]   # preprocessed features per split
  labels: dict[str, np.ndarray]
  cnn_train_mels: np.ndarray | None = None    # offline-augmented training set for stage 1
  cnn_train_labels: np.ndarray | None = None
  # online augmentation: ``(batch_size, mesh) -> (epoch -> batches)`` for stage 1
  cnn_train_batches: Callable[..., Callable[[int], Any]] | None = None
  # the ``waveforms`` pipeline: stage 1 trains from clips (merjax.batches.augmented.WaveformTraining)
  cnn_waveforms: Any = None


def train_hybrid(data: StageData, *, config: Config, mel_mean: float, mel_std: float,
                 feature_preprocessor: Any = None, log: Callable[[str], Any] | None = print,
                 mesh: Any = "auto", workdir: str | os.PathLike | None = None,
                 device_memory_gb: float | None = None
                 ) -> tuple[HybridModel, dict[str, FitResult]]:
  """Runs the three stages and returns the trained hybrid and each stage's fit.

  Args:
    data: normalised inputs and labels; ``cnn_train_*`` replace the CNN's training split
      when the paper's augmentation is on, and ``cnn_waveforms`` makes the CNN stage train from
      the clips, augmented inside its jitted step.
    config: model and per-stage training settings.
    mel_mean, mel_std: recorded in the returned model for inference.
    feature_preprocessor: recorded in the returned model for inference.
    log: progress sink.
    mesh: data-parallel mesh for every stage (see :func:`train_classifier`).
    workdir: when given, each stage checkpoints to (and resumes from) ``workdir/<stage>``.
    device_memory_gb: GiB per device a resident split may take (see :func:`train_classifier`).

  Returns:
    ``(model, {"cnn": FitResult, "dnn": FitResult, "fusion": FitResult})``.
  """
  cnn_train_mels = data.mels["train"] if data.cnn_train_mels is None else data.cnn_train_mels
  cnn_train_labels = (data.labels["train"] if data.cnn_train_labels is None
                      else data.cnn_train_labels)
  mesh = parallel.resolve_mesh(mesh)

  def stage_kwargs(stage: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"mesh": mesh, "log": log, "stage": stage,
                              "device_memory_gb": device_memory_gb}
    if workdir is not None:
      kwargs["workdir"] = os.path.join(os.fspath(workdir), stage)
    return kwargs

  fits = {}
  online = (None if data.cnn_train_batches is None
            else data.cnn_train_batches(batch_size=config.cnn.batch_size, mesh=mesh))
  wrap_apply = None
  if data.cnn_waveforms is not None:
    online = data.cnn_waveforms.batches(batch_size=config.cnn.batch_size, seed=config.cnn.seed,
                                        mesh=mesh, device_memory_gb=device_memory_gb)
    wrap_apply = functools.partial(data.cnn_waveforms.front_end, mesh=mesh)
  fits["cnn"] = train_classifier(
      CNN(config.model), train={"inputs": cnn_train_mels, "label": cnn_train_labels},
      val={"inputs": data.mels["validate"], "label": data.labels["validate"]},
      config=config.cnn, train_batches=online, wrap_apply=wrap_apply, **stage_kwargs("cnn"))
  fits["dnn"] = train_classifier(
      DNN(config.model), train={"inputs": data.features["train"], "label": data.labels["train"]},
      val={"inputs": data.features["validate"], "label": data.labels["validate"]},
      config=config.dnn, **stage_kwargs("dnn"))
  partial = HybridModel(config=config, cnn=fits["cnn"].state.variables,
                        dnn=fits["dnn"].state.variables, fusion={}, mel_mean=mel_mean,
                        mel_std=mel_std, feature_preprocessor=feature_preprocessor)
  embeddings = {split: partial.embeddings(mels=data.mels[split], features=data.features[split])
                for split in ("train", "validate")}
  fits["fusion"] = train_classifier(
      Fusion(config.model), train={"inputs": embeddings["train"], "label": data.labels["train"]},
      val={"inputs": embeddings["validate"], "label": data.labels["validate"]},
      config=config.fusion, **stage_kwargs("fusion"))
  model = dataclasses.replace(partial, fusion=fits["fusion"].state.variables)
  return model, fits
