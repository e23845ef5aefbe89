"""The pure, jitted training and evaluation steps (big_vision style)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from merjax import parallel
from merjax.train.state import TrainState

Batch = dict[str, jax.Array]  # {"inputs", "label", "mask"}; mask is 1 for real examples.


def _masked_sums(logits: jax.Array, batch: Batch) -> dict[str, jax.Array]:
  # Mixed precision: the loss and its reductions stay float32 whatever the compute dtype.
  logits = logits.astype(jnp.float32)
  mask = batch["mask"].astype(jnp.float32)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
  correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
  return {"loss_sum": (losses * mask).sum(), "correct": (correct * mask).sum(),
          "count": mask.sum()}


def train_step(state: TrainState, batch: Batch, rng: jax.Array) -> tuple[TrainState, dict]:
  """One optimisation step on a (possibly padded) batch.

  The loss is the mean cross-entropy over real examples (Keras' per-batch mean). Padded
  examples are excluded from the loss and from the BatchNorm statistics.

  Args:
    state: the current train state.
    batch: ``{"inputs": [shape=(batch, ...)], "label": [shape=(batch,)] int,
      "mask": [shape=(batch,)]}``.
    rng: the run's dropout key; it is folded with the step so every step differs.

  Returns:
    The new state and sums (``loss_sum``, ``correct``, ``count``) plus health metrics
    (``grad_norm``, ``param_norm``).
  """
  rng = jax.random.fold_in(rng, state.step)
  mask = batch["mask"].astype(jnp.float32)

  def loss_fn(params):
    variables = {"params": params}
    mutable = []
    if state.batch_stats:
      variables["batch_stats"] = state.batch_stats
      mutable = ["batch_stats"]
    logits, updates = state.apply_fn(variables, batch["inputs"], train=True, mask=mask,
                                     rngs={"dropout": rng}, mutable=mutable)
    sums = _masked_sums(logits, batch)
    return sums["loss_sum"] / jnp.maximum(sums["count"], 1.0), (sums, updates)

  grads, (sums, updates) = jax.grad(loss_fn, has_aux=True)(state.params)
  param_updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, param_updates)
  new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                            batch_stats=updates.get("batch_stats", state.batch_stats))
  metrics = dict(sums, grad_norm=optax.tree.norm(grads), param_norm=optax.tree.norm(params))
  return new_state, metrics


def eval_step(state: TrainState, batch: Batch) -> dict[str, jax.Array]:
  """Inference-mode masked sums (``loss_sum``, ``correct``, ``count``) of one batch.

  Only the sums leave the devices: the logits stay inside the step.
  """
  logits = state.apply_fn(state.variables, batch["inputs"], train=False)
  return _masked_sums(logits, batch)


# The pure step jitted for one device's arrays (step-level tests and benchmarks); training
# runs :func:`mesh_train_step`, over a mesh of one device or more.
jit_train_step = jax.jit(train_step, donate_argnums=(0,))


@functools.cache
def mesh_train_step(mesh: jax.sharding.Mesh):
  """:func:`train_step` jitted data-parallel over ``mesh``.

  The state and the key are replicated (and the state donated), the batch is split along
  ``data``; the metrics come back replicated, so every process can read them.

  Args:
    mesh: a mesh from :func:`merjax.parallel.make_data_mesh`.

  Returns:
    ``step(state, batch, rng) -> (state, metrics)``.
  """
  rep, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  return jax.jit(train_step, in_shardings=(rep, data, rep), out_shardings=(rep, rep),
                 donate_argnums=(0,))


@functools.cache
def mesh_eval_step(mesh: jax.sharding.Mesh):
  """:func:`eval_step` over ``mesh``: the batch split along ``data``, the sums replicated."""
  rep, data = parallel.replicated(mesh), parallel.data_sharding(mesh)
  return jax.jit(eval_step, in_shardings=(rep, data), out_shardings=rep)


def sum_metrics(per_step: list[dict[str, Any]]) -> dict[str, float]:
  """Host-side reduction of per-step metrics fetched once per epoch."""
  fetched = jax.device_get(per_step)
  totals = {key: float(sum(m[key] for m in fetched)) for key in ("loss_sum", "correct", "count")}
  count = max(totals["count"], 1.0)
  summary = {"loss": totals["loss_sum"] / count, "accuracy": totals["correct"] / count}
  if fetched and "grad_norm" in fetched[0]:
    summary["grad_norm"] = float(max(m["grad_norm"] for m in fetched))
    summary["param_norm"] = float(fetched[-1]["param_norm"])
  return summary
