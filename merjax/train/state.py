"""Train state (params, BatchNorm statistics, optimizer state) and the optimizers."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

from merjax.config import TrainConfig
from merjax.parallel.per_process import assert_same_on_every_process


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


@dataclasses.dataclass(frozen=True)
class _Apply:
  """``model.apply`` that compares by the module's configuration.

  ``apply_fn`` is a static field of the state, so jit caches on its equality: bound methods
  of equal but distinct modules differ, and every trial would recompile the same step.
  """

  model: Any

  def __call__(self, *args, **kwargs):
    return self.model.apply(*args, **kwargs)


@functools.partial(jax.jit, static_argnums=0)
def _init_variables(model, params_rng: jax.Array, dropout_rng: jax.Array, inputs: jax.Array):
  return model.init({"params": params_rng, "dropout": dropout_rng}, inputs, train=False)


def scale_by_keras_adam(b1: float = 0.9, b2: float = 0.999,
                        eps: float = 1e-7) -> optax.GradientTransformation:
  """Adam's scaling exactly as Keras computes it (``keras.optimizers.Adam``).

  Keras adds ``epsilon`` to the square root of the *uncorrected* second moment and folds both
  bias corrections into the step size: ``alpha_t = sqrt(1 - b2**t) / (1 - b1**t)`` and
  ``update = alpha_t * m / (sqrt(v) + eps)`` (Kingma and Ba's "epsilon hat"). optax's
  ``scale_by_adam`` adds ``eps`` to the corrected root instead, which differs whenever
  gradients are small next to ``eps``. The state is optax's ``ScaleByAdamState``.
  """

  def init(params):
    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    return optax.ScaleByAdamState(count=jnp.zeros([], jnp.int32), mu=zeros,
                                  nu=jax.tree_util.tree_map(jnp.zeros_like, params))

  def update(updates, state, params=None):
    del params
    mu = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, state.mu, updates)
    nu = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, state.nu, updates)
    count = optax.safe_int32_increment(state.count)
    t = count.astype(jnp.float32)
    alpha = jnp.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    updates = jax.tree_util.tree_map(
        lambda m, v: (alpha * m / (jnp.sqrt(v) + eps)).astype(m.dtype), mu, nu)
    return updates, optax.ScaleByAdamState(count=count, mu=mu, nu=nu)

  return optax.GradientTransformation(init, update)


def make_optimizer(config: TrainConfig) -> optax.GradientTransformation:
  """Plain SGD or Adam with Keras' defaults (no momentum; Adam eps=1e-7 as Keras applies it,
  see :func:`scale_by_keras_adam`).

  Args:
    config: the stage's :class:`~merjax.config.TrainConfig`.

  Returns:
    An optax gradient transformation (the same object for the same settings, so jitted
    steps are reused across runs).
  """
  return _optimizer(config.optimizer, config.learning_rate)


@functools.cache
def _optimizer(optimizer: str, learning_rate: float) -> optax.GradientTransformation:
  if optimizer == "sgd":
    return optax.sgd(learning_rate)
  if optimizer == "adam":
    return optax.chain(scale_by_keras_adam(b1=0.9, b2=0.999, eps=1e-7),
                       optax.scale_by_learning_rate(learning_rate))
  raise ValueError(f"unknown optimizer {optimizer!r}")


def create_state(model, example_inputs: jax.Array, config: TrainConfig, *,
                 rng: jax.Array | None = None, variables: dict[str, Any] | None = None
                 ) -> TrainState:
  """A model's train state at step 0: new variables (``rng``) or given ones (``variables``).

  Args:
    model: a Flax module called as ``model(inputs, train=..., mask=...)``.
    example_inputs: a batch with the real input shape (only the shape is used, to initialise).
    config: the stage's training settings.
    rng: the initialisation key.
    variables: start from these variables instead (``params`` and, with BatchNorm,
      ``batch_stats``; e.g. a trained model's, to fine-tune it).

  Returns:
    A :class:`TrainState` at step 0 with a fresh optimizer state.
  """
  if (rng is None) == (variables is None):
    raise ValueError("create_state needs either rng (to initialise) or variables")
  if variables is None:
    assert rng is not None  # checked just above
    params_rng, dropout_rng = jax.random.split(rng)
    variables = _init_variables(model, params_rng, dropout_rng, jnp.zeros_like(example_inputs))
  tx = make_optimizer(config)
  params = variables["params"]
  # Every process initialises (or loads) on its own: a multi-host run must start from one state.
  assert_same_on_every_process(variables, what="the initial variables")
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    batch_stats=variables.get("batch_stats", {}), opt_state=tx.init(params),
                    apply_fn=_Apply(model), tx=tx)
