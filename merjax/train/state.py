"""Train state (params, BatchNorm statistics, optimizer state) and the optimizers."""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct

from merjax.config import TrainConfig


class TrainState(struct.PyTreeNode):
  """Everything one jitted step reads and writes.

  ``apply_fn`` and ``tx`` are static, so one compiled step serves every state of a model.
  """

  step: jax.Array
  params: Any
  batch_stats: Any
  opt_state: optax.OptState
  apply_fn: Callable = struct.field(pytree_node=False)
  tx: optax.GradientTransformation = struct.field(pytree_node=False)

  @property
  def variables(self) -> dict[str, Any]:
    variables = {"params": self.params}
    if self.batch_stats:
      variables["batch_stats"] = self.batch_stats
    return variables


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
  """Plain SGD or Adam with Keras' defaults (no momentum; Adam eps=1e-7).

  Args:
    config: the stage's :class:`~merjax.config.TrainConfig`.

  Returns:
    An optax gradient transformation.
  """
  if config.optimizer == "sgd":
    return optax.sgd(config.learning_rate)
  if config.optimizer == "adam":
    return optax.adam(config.learning_rate, b1=0.9, b2=0.999, eps=1e-7)
  raise ValueError(f"unknown optimizer {config.optimizer!r}")


def create_state(model, example_inputs: jax.Array, config: TrainConfig, *, rng: jax.Array
                 ) -> TrainState:
  """Initialises a model's variables and optimizer state.

  Args:
    model: a Flax module called as ``model(inputs, train=..., mask=...)``.
    example_inputs: a batch with the real input shape (only the shape is used).
    config: the stage's training settings.
    rng: the initialisation key.

  Returns:
    A fresh :class:`TrainState` at step 0.
  """
  params_rng, dropout_rng = jax.random.split(rng)
  variables = jax.jit(lambda x: model.init({"params": params_rng, "dropout": dropout_rng}, x,
                                           train=False))(jnp.zeros_like(example_inputs))
  tx = make_optimizer(config)
  params = variables["params"]
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                    apply_fn=model.apply, tx=tx)
