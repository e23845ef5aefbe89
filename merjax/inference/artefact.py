"""The trained hybrid users load (:class:`HybridModel`) and its one jitted forward pass.

:func:`forward` is the only compiled entry point of inference: a module-level ``jax.jit``
whose first argument is the variables, so one executable serves every model of the same
shapes, nothing is compiled again per call and no weights are folded into the executable.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from typing import Any, cast

import jax
import jax.numpy as jnp
import numpy as np

from merjax.config import AudioConfig, Config, ModelConfig
from merjax.models import CNN, DNN, Fusion

# What :func:`forward` computes.
OUTPUTS = ("cnn", "dnn", "hybrid", "embeddings")


@functools.partial(jax.jit, static_argnames=("which", "model_config", "audio"))
def forward(variables: Mapping[str, Any], inputs: Mapping[str, jax.Array], *, which: str,
            model_config: ModelConfig, audio: AudioConfig | None = None) -> jax.Array:
  """Logits (or embeddings) of one batch, in inference mode.

  Args:
    variables: ``{"cnn": ..., "dnn": ..., "fusion": ...}`` stage variables; only those that
      ``which`` uses need to be present.
    inputs: a batch with ``mels`` (normalised log-mels [shape=(b, n_mels, frames)]) or
      ``waveforms`` [shape=(b, samples)] plus the scalars ``mel_mean`` and ``mel_std`` (the
      log-mel is then computed here, on the device, with ``audio``'s settings); and
      ``features`` (preprocessed features [shape=(b, n_features)]) for ``dnn``, ``hybrid``
      and ``embeddings``.
    which: ``cnn``, ``dnn`` or ``hybrid`` (logits [shape=(b, n_classes)]) or ``embeddings``
      (the frozen branch embeddings concatenated [shape=(b, cnn_embedding + dnn_embedding)]).
    model_config: the networks' sizes.
    audio: spectral settings, needed only with ``waveforms``.

  Returns:
    float32 logits or embeddings.
  """
  if which not in OUTPUTS:
    raise ValueError(f"which must be one of {', '.join(OUTPUTS)}, got {which!r}")

  def mels() -> jax.Array:
    if "mels" in inputs:
      return inputs["mels"]
    from merjax.audio.spectral import _log_mel
    if audio is None:
      raise ValueError("forward needs audio settings to compute the log-mel of waveforms")
    log_mels = _log_mel(inputs["waveforms"], sample_rate=audio.sample_rate, n_fft=audio.n_fft,
                        hop_length=audio.hop_length, n_mels=audio.n_mels, fmin=audio.fmin,
                        fmax=audio.fmax, ref=audio.ref, amin=audio.amin, top_db=audio.top_db)
    return (log_mels - inputs["mel_mean"]) / inputs["mel_std"]

  # Module.apply is typed as "outputs, or (outputs, mutated state)"; nothing is mutable here.
  if which == "cnn":
    return cast(jax.Array, CNN(model_config).apply(variables["cnn"], mels(), train=False))
  if which == "dnn":
    return cast(jax.Array, DNN(model_config).apply(variables["dnn"], inputs["features"],
                                                   train=False))
  embeddings = jnp.concatenate(
      [cast(jax.Array, CNN(model_config).apply(variables["cnn"], mels(), method=CNN.embed)),
       cast(jax.Array, DNN(model_config).apply(variables["dnn"], inputs["features"],
                                               method=DNN.embed))], axis=-1)
  if which == "embeddings":
    return embeddings
  return cast(jax.Array, Fusion(model_config).apply(variables["fusion"], embeddings,
                                                    train=False))


def _needs(which: str) -> tuple[str, ...]:
  return {"cnn": ("cnn",), "dnn": ("dnn",), "embeddings": ("cnn", "dnn")}.get(
      which, ("cnn", "dnn", "fusion"))


@dataclasses.dataclass
class HybridModel:
  """A trained hybrid: branch and fusion variables plus the input normalisation.

  Attributes:
    config: the run's configuration.
    cnn: variables of :class:`merjax.models.CNN` (body and stage-1 head).
    dnn: variables of :class:`merjax.models.DNN` (body and stage-2 head).
    fusion: variables of :class:`merjax.models.Fusion`.
    mel_mean, mel_std: the global log-mel z-normalisation fitted on the training split.
    feature_preprocessor: the fitted handcrafted-feature transform (``to_dict`` able), or None.
  """

  config: Config
  cnn: Mapping[str, Any]
  dnn: Mapping[str, Any]
  fusion: Mapping[str, Any]
  mel_mean: float
  mel_std: float
  feature_preprocessor: Any = None

  @classmethod
  def initialise(cls, config: Config, *, waveforms: np.ndarray, seed: int = 0) -> HybridModel:
    """An untrained model: fresh weights, normalisation and feature preprocessing fitted on clips.

    For tests and benchmarks, whose plumbing and speed do not depend on trained weights.

    Args:
      config: the model, audio and feature settings.
      waveforms: at least two clips [shape=(n, config.audio.clip_samples)] to fit the log-mel
        statistics and the feature preprocessing on.
      seed: the weights' seed.

    Returns:
      The :class:`HybridModel`.
    """
    from merjax.features import FeaturePreprocessor, extract_features, feature_names
    from merjax.inputs.log_mel import log_mels, mel_statistics

    sample_rate = config.audio.sample_rate
    raw = extract_features(waveforms, sample_rate=sample_rate, backend=config.features_backend)
    preprocessor = FeaturePreprocessor().fit(
        raw, feature_names(backend=config.features_backend, sample_rate=sample_rate))
    mels = log_mels(waveforms, audio=config.audio)
    mel_mean, mel_std = mel_statistics(mels)
    keys = jax.random.split(jax.random.key(seed), 3)
    model_config = config.model
    n_features = len(preprocessor.output_names)
    embedding = model_config.cnn_embedding + model_config.dnn_hidden[-1]
    return cls(config=config,
               cnn=CNN(model_config).init(keys[0], mels[:1], train=False),
               dnn=DNN(model_config).init(keys[1], np.zeros((1, n_features), np.float32),
                                          train=False),
               fusion=Fusion(model_config).init(keys[2], np.zeros((1, embedding), np.float32),
                                                train=False),
               mel_mean=mel_mean, mel_std=mel_std, feature_preprocessor=preprocessor)

  def hybrid_variables(self) -> dict:
    """Variables of :class:`merjax.models.Hybrid` assembled from the three stages."""
    return {"params": {"cnn": self.cnn["params"]["body"], "dnn": self.dnn["params"]["body"],
                       "fusion": self.fusion["params"]},
            "batch_stats": {"cnn": self.cnn["batch_stats"]["body"]}}

  def variables(self, *, which: str = "hybrid") -> dict:
    """The stage variables :func:`forward` needs for ``which``."""
    return {stage: getattr(self, stage) for stage in _needs(which)}

  def normalise_mels(self, log_mels: np.ndarray) -> np.ndarray:
    return ((np.asarray(log_mels, np.float32) - self.mel_mean) / self.mel_std).astype(np.float32)

  def preprocess_features(self, raw: np.ndarray) -> np.ndarray:
    """The fitted feature transform (median imputation, column selection, standardisation)."""
    if self.feature_preprocessor is None:
      return np.asarray(raw, np.float32)
    return np.asarray(self.feature_preprocessor.transform(raw), np.float32)

  def _in_batches(self, *, which: str, batch_size: int, **arrays: np.ndarray | None
                  ) -> np.ndarray:
    given = {k: np.asarray(v, np.float32) for k, v in arrays.items() if v is not None}
    if not given:
      raise ValueError("no inputs to process")
    n = len(next(iter(given.values())))
    if n == 0:
      raise ValueError("no inputs to process")
    batch_size = min(batch_size, n)
    variables = self.variables(which=which)
    outputs = []
    for start in range(0, n, batch_size):
      batch = {k: v[start:start + batch_size] for k, v in given.items()}
      real = len(next(iter(batch.values())))
      if real < batch_size:  # pad the last batch: one shape, one compilation
        batch = {k: np.pad(v, [(0, batch_size - real)] + [(0, 0)] * (v.ndim - 1))
                 for k, v in batch.items()}
      outputs.append((forward(variables, batch, which=which, model_config=self.config.model),
                      real))
    return np.concatenate([np.asarray(out)[:real] for out, real in outputs])

  def logits(self, *, mels: np.ndarray | None = None, features: np.ndarray | None = None,
             which: str = "hybrid", batch_size: int = 32) -> np.ndarray:
    """Logits of one of the three classifiers on normalised mels and preprocessed features.

    Args:
      mels: normalised log-mels [shape=(n, n_mels, frames)] (for ``cnn`` and ``hybrid``).
      features: preprocessed features [shape=(n, n_features)] (for ``dnn`` and ``hybrid``).
      which: ``"cnn"``, ``"dnn"`` or ``"hybrid"``.
      batch_size: inference batch size.

    Returns:
      Logits [shape=(n, 4)].
    """
    if which not in ("cnn", "dnn", "hybrid"):
      raise ValueError(f"which must be cnn, dnn or hybrid, got {which!r}")
    return self._in_batches(which=which, batch_size=batch_size,
                            mels=None if which == "dnn" else mels,
                            features=None if which == "cnn" else features)

  def embeddings(self, *, mels: np.ndarray, features: np.ndarray, batch_size: int = 32
                 ) -> np.ndarray:
    """Frozen branch embeddings, concatenated [shape=(n, cnn_embedding + dnn_embedding)]."""
    return self._in_batches(which="embeddings", batch_size=batch_size, mels=mels,
                            features=features)
