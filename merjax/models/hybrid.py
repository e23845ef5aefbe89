"""Fusion of the two branch embeddings, and the whole hybrid network."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from merjax.config import ModelConfig
from merjax.models.cnn import CNNBody
from merjax.models.dnn import DNNBody
from merjax.models.layers import MLP, dense_init


class Fusion(nn.Module):
  """The classifier: three Dense layers on the concatenated embeddings, the last with 4 outputs."""

  config: ModelConfig = ModelConfig()

  @nn.compact
  def __call__(self, embeddings: jax.Array, *, train: bool, mask: jax.Array | None = None
               ) -> jax.Array:
    """Maps [shape=(batch, cnn_embedding + dnn_embedding)] to logits [shape=(batch, n_classes)]."""
    del mask
    cfg = self.config
    x = MLP(cfg.fusion_hidden, cfg.fusion_dropout, name="mlp")(embeddings, train=train)
    return nn.Dense(cfg.n_classes, kernel_init=dense_init, name="out")(x)


class Hybrid(nn.Module):
  """CNN body + DNN body + fusion classifier (Louro et al. 2024, Figure 1).

  The branches run in inference mode (BatchNorm running statistics, no dropout) behind a
  ``stop_gradient``: stage 3 trains only ``fusion``. Training stage 3 on cached branch
  embeddings (:mod:`merjax.train.stages`) is the same computation, done once per clip.
  """

  config: ModelConfig = ModelConfig()

  def setup(self):
    self.cnn = CNNBody(self.config)
    self.dnn = DNNBody(self.config)
    self.fusion = Fusion(self.config)

  def __call__(self, mels: jax.Array, features: jax.Array, *, train: bool) -> jax.Array:
    """Logits [shape=(batch, n_classes)] from log-mels and standardised features."""
    return self.fusion(self.embed(mels, features), train=train)

  def embed(self, mels: jax.Array, features: jax.Array) -> jax.Array:
    """Concatenated frozen embeddings [shape=(batch, cnn_embedding + dnn_embedding)]."""
    cnn = self.cnn(mels, train=False)
    dnn = self.dnn(features, train=False)
    return jax.lax.stop_gradient(jnp.concatenate([cnn, dnn], axis=-1))
