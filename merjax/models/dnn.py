"""The handcrafted-feature branch: a dense network on standardised features."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from merjax.config import ModelConfig
from merjax.models.layers import MLP, dense_init


class DNNBody(nn.Module):
  """Dense 512 -> 256 -> 100 with ReLU and Dropout; the last hidden layer is the embedding."""

  config: ModelConfig = ModelConfig()

  @nn.compact
  def __call__(self, features: jax.Array, *, train: bool) -> jax.Array:
    """Embeds features [shape=(batch, n_features)] to [shape=(batch, dnn_hidden[-1])]."""
    cfg = self.config
    return MLP(cfg.dnn_hidden, cfg.dnn_dropout, dtype=jnp.dtype(cfg.dtype), name="mlp")(
        features, train=train).astype(jnp.float32)


class DNN(nn.Module):
  """DNN branch with its own 4-way head, for stage-2 pre-training."""

  config: ModelConfig = ModelConfig()

  def setup(self):
    self.body = DNNBody(self.config)
    self.head = nn.Dense(self.config.n_classes, kernel_init=dense_init)

  def __call__(self, features: jax.Array, *, train: bool, mask: jax.Array | None = None
               ) -> jax.Array:
    """Returns logits [shape=(batch, n_classes)]; ``mask`` is accepted for a uniform API."""
    del mask
    return self.head(self.body(features, train=train))

  def embed(self, features: jax.Array, *, train: bool = False) -> jax.Array:
    return self.body(features, train=train)
