"""Fine-tuned fusion: the whole hybrid trained end to end, an ablation of the paper's stage 3.

The paper freezes both branches and trains only the fusion classifier (Section 3.3). This
variant starts from a trained hybrid (pre-trained branches and the frozen-stage fusion) and
trains every part jointly on the training split: the CNN body with its BatchNorm on batch
statistics and its dropout, the DNN body, and the fusion classifier, under the same stopping
rules (the fusion stage's settings by default). The stage heads are kept as they were, so the
returned model still reports the branches' own classifiers.

The network's two inputs travel as one array per example, the flattened log-mels followed by
the features (:func:`pack_inputs`), so the generic batching, steps and data parallelism of
:mod:`merjax.train` serve it unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn
from jax.sharding import Mesh

from merjax.config import ModelConfig, TrainConfig
from merjax.inference.artefact import HybridModel
from merjax.models import CNNBody, DNNBody, Fusion
from merjax.train.fit import FitResult
from merjax.train.stages import StageData, train_classifier


def pack_inputs(mels: np.ndarray, features: np.ndarray) -> np.ndarray:
  """One row per example: log-mels [shape=(n, n_mels, frames)] flattened, then features.

  Returns:
    [shape=(n, n_mels * frames + n_features)] float32.
  """
  mels, features = np.asarray(mels, np.float32), np.asarray(features, np.float32)
  if len(mels) != len(features):
    raise ValueError(f"{len(mels)} log-mel clips but {len(features)} feature rows")
  return np.concatenate([mels.reshape(len(mels), -1), features], axis=1)


class TrainableHybrid(nn.Module):
  """CNN body + DNN body + fusion, all trainable, on packed inputs (see :func:`pack_inputs`).

  Its variables are named like :class:`merjax.models.Hybrid`'s (``cnn``, ``dnn``,
  ``fusion``), so :meth:`HybridModel.hybrid_variables` initialises it.

  Attributes:
    config: layer sizes.
    n_mels, frames: the log-mel shape inside a packed row.
  """

  config: ModelConfig
  n_mels: int
  frames: int

  def setup(self):
    self.cnn = CNNBody(self.config)
    self.dnn = DNNBody(self.config)
    self.fusion = Fusion(self.config)

  def __call__(self, packed: jax.Array, *, train: bool, mask: jax.Array | None = None
               ) -> jax.Array:
    """Logits [shape=(batch, n_classes)] for packed rows [shape=(batch, width)]."""
    size = self.n_mels * self.frames
    mels = packed[:, :size].reshape(-1, self.n_mels, self.frames)
    embeddings = jnp.concatenate([self.cnn(mels, train=train, mask=mask),
                                  self.dnn(packed[:, size:], train=train)], axis=-1)
    return self.fusion(embeddings, train=train)


def finetune_hybrid(model: HybridModel, data: StageData, *, mesh: Mesh,
                    config: TrainConfig | None = None, log: Callable[[str], Any] | None = print
                    ) -> tuple[HybridModel, FitResult]:
  """Trains a trained hybrid end to end, its branches unfrozen.

  Args:
    model: the hybrid after the paper's three stages (its variables are the starting point).
    data: the stage inputs; the original (unaugmented) training split is used, since the
      branches see the log-mels and the features of the same clips.
    config: optimizer, batch size and stopping rules (default: ``model.config.fusion``).
    log: per-epoch log sink, None for silence.
    mesh: the data mesh (as in :func:`merjax.train.train_classifier`).

  Returns:
    ``(fine-tuned model, fit)``: the model's CNN and DNN bodies and fusion are the best
    validation epoch's; their stage heads are the originals.
  """
  config = config or model.config.fusion
  _, n_mels, frames = data.mels["train"].shape
  network = TrainableHybrid(model.config.model, n_mels=n_mels, frames=frames)
  split = {name: {"inputs": pack_inputs(data.mels[name], data.features[name]),
                  "label": data.labels[name]} for name in ("train", "validate")}

  fit = train_classifier(network, variables=model.hybrid_variables(), train=split["train"],
                         val=split["validate"], config=config, mesh=mesh, stage="finetune",
                         log=log)
  variables = jax.device_get(fit.state.variables)
  tuned = dataclasses.replace(
      model,
      cnn={"params": {**model.cnn["params"], "body": variables["params"]["cnn"]},
           "batch_stats": {"body": variables["batch_stats"]["cnn"]}},
      dnn={**model.dnn, "params": {**model.dnn["params"], "body": variables["params"]["dnn"]}},
      fusion={"params": variables["params"]["fusion"]})
  return tuned, fit

