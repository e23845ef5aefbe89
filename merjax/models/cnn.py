"""The learned-feature branch: Choi et al. (2016) CNN as used by Louro et al. (2024)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from merjax.config import ModelConfig, resolve_cnn_impl
from merjax.models.kernels import dropout
from merjax.models.kernels.fused import BatchNormDropoutPool, ConvParams, DropoutKey
from merjax.models.layers import conv_init, dense_init, max_pool


class CNNBody(nn.Module):
  """Four conv blocks and the Dense-300 embedding.

  Each block is Conv2D 3x3 (valid) -> BatchNorm -> Dropout -> MaxPool -> ReLU; the last block
  has no Dropout. Then Flatten -> Dropout -> Dense(300) -> ReLU.

  ``config.cnn_impl`` picks the implementation of the blocks: ``"plain"`` composes Flax's
  layers; ``"fast"`` runs each block as one op with an analytic backward pass
  (:mod:`merjax.models.kernels.fused`); ``"auto"`` (the default) takes the one measured
  fastest on the backend (:func:`merjax.config.resolve_cnn_impl`: fast on CPU, plain
  elsewhere). Both compute the same function with the same variables
  (names, shapes, dropout masks), so checkpoints of one load in the other.
  """

  config: ModelConfig = ModelConfig()

  @nn.compact
  def __call__(self, mels: jax.Array, *, train: bool, mask: jax.Array | None = None) -> jax.Array:
    """Embeds log-mel spectrograms.

    Args:
      mels: normalised log-mels [shape=(batch, n_mels, frames)].
      train: dropout on and BatchNorm on batch statistics (updating ``batch_stats``).
      mask: optional [shape=(batch,)] weights; padded examples (0) do not enter the
        BatchNorm batch statistics.

    Returns:
      The branch embedding [shape=(batch, cnn_embedding)].
    """
    cfg = self.config
    if mels.ndim != 3:
      raise ValueError(f"CNN input must be [shape=(batch, n_mels, frames)], got {mels.shape}")
    flattened_size(cfg, n_mels=mels.shape[1], frames=mels.shape[2])  # fails early if too small
    dtype = jnp.dtype(cfg.dtype)
    x = jnp.swapaxes(mels, 1, 2)[..., None].astype(dtype)  # (batch, time, mel, 1) as in Keras
    fast = resolve_cnn_impl(cfg.cnn_impl) == "fast"
    last = len(cfg.conv_pools) - 1
    for i, pool in enumerate(cfg.conv_pools):
      rate = cfg.conv_dropout if i < last else 0.0
      if fast:
        kernel, conv_bias = ConvParams(cfg.conv_filters, (3, 3), kernel_init=conv_init,
                                       name=f"conv{i}")(x.shape[-1])
        # The key the unfused network's Dropout_i draws: equal masks, equal outputs.
        key = DropoutKey(name=f"Dropout_{i}")() if train and rate > 0 else None
        x = BatchNormDropoutPool(pool, rate=rate, momentum=cfg.batchnorm_momentum,
                                 epsilon=cfg.batchnorm_epsilon, dtype=dtype, name=f"bn{i}")(
                                     x, kernel=kernel, conv_bias=conv_bias, train=train,
                                     mask=mask, dropout_key=key)
      else:
        x = nn.Conv(cfg.conv_filters, (3, 3), padding="VALID", kernel_init=conv_init,
                    dtype=dtype, name=f"conv{i}")(x)
        x = nn.BatchNorm(use_running_average=not train, momentum=cfg.batchnorm_momentum,
                         epsilon=cfg.batchnorm_epsilon, dtype=dtype, name=f"bn{i}")(
                             x, mask=None if mask is None else (mask > 0)[:, None, None, None])
        if i < last:
          x = nn.Dropout(rate, deterministic=not train, name=f"Dropout_{i}")(x)
        x = max_pool(x, pool, impl="plain")
      x = nn.relu(x)
    x = x.reshape(x.shape[0], -1)
    Dropout = dropout.Dropout if fast else nn.Dropout
    x = Dropout(cfg.cnn_dense_dropout, deterministic=not train, name=f"Dropout_{last}")(x)
    x = nn.Dense(cfg.cnn_embedding, kernel_init=dense_init, dtype=dtype, name="embedding")(x)
    return nn.relu(x).astype(jnp.float32)


class CNN(nn.Module):
  """CNN branch with its own 4-way head, for stage-1 pre-training."""

  config: ModelConfig = ModelConfig()

  def setup(self):
    self.body = CNNBody(self.config)
    self.head = nn.Dense(self.config.n_classes, kernel_init=dense_init)

  def __call__(self, mels: jax.Array, *, train: bool, mask: jax.Array | None = None) -> jax.Array:
    """Returns logits [shape=(batch, n_classes)] for log-mels [shape=(batch, n_mels, frames)]."""
    return self.head(self.body(mels, train=train, mask=mask))

  def embed(self, mels: jax.Array, *, train: bool = False) -> jax.Array:
    """The Dense-300 embedding [shape=(batch, cnn_embedding)]."""
    return self.body(mels, train=train)


def flattened_size(config: ModelConfig, *, n_mels: int, frames: int) -> int:
  """Width of the Flatten layer for an input of ``frames`` x ``n_mels``."""
  time, mel = frames, n_mels
  for pt, pm in config.conv_pools:
    time, mel = (time - 2) // pt, (mel - 2) // pm
  if time <= 0 or mel <= 0:
    raise ValueError(f"input of {frames} frames x {n_mels} mels is too small for pools "
                     f"{config.conv_pools}")
  return time * mel * config.conv_filters
