"""Training throughput of the CNN and fusion stages, on 1 and N devices, against Keras.

Cases: ``cnn_train`` (the CNN stage on 938 x 128 log-mels) and
``fusion_train`` (the fusion classifier on 400-wide embeddings); every row carries
``devices`` and ``impl`` (``fast``: the fused blocks, ``cnn_impl="auto"`` on CPU; ``plain``:
Flax's own layers, ``auto`` on accelerators).
The data stays on the device and the step is the real one (:mod:`merjax.train.steps`).
Implementations are timed interleaved, several repeats each, and every row reports the
median with the range over repeats (``range``).

The reference is Keras 3 on TensorFlow when both are installed (``pip install
'merjax[bench]'``; see ``keras_cnn.py``), timed in the same process; without them the fast
CNN is compared with the plain one. Every device count runs in a child process of its own,
and the parent never starts JAX (on a GPU it would preallocate the memory the children need):
on CPU with ``--xla_force_host_platform_device_count`` virtual devices (the flag has to be
set before JAX starts), on accelerators with the real devices. Data parallelism is
``jax.jit`` over a ``data`` mesh (:func:`merjax.train.steps.mesh_train_step`), and the
reference of a multi-device row is the 1-device throughput of the same implementation.

The script runs unchanged on a GPU (e.g. ``--batch 32 256`` to see the large-batch rate).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from _common import emit, parser, row

FEATURES_WIDTH = 300 + 100  # CNN Dense-300 embedding + DNN Dense-100 embedding


def _cnn_case(impl: str, *, batch: int, frames: int, n_mels: int, dtype: str, mesh):
  """A (step, state, batches, rng) tuple for the CNN stage."""
  import jax
  import jax.numpy as jnp

  from merjax.config import ModelConfig, TrainConfig
  from merjax.models import CNN
  model = CNN(ModelConfig(cnn_impl=impl, dtype=dtype))
  inputs = jax.random.normal(jax.random.key(0), (batch, n_mels, frames), jnp.float32)
  return _case(model, inputs, TrainConfig(optimizer="sgd", learning_rate=1e-2, batch_size=batch),
               batch=batch, mesh=mesh, n_batches=1)


def _fusion_case(*, batch: int, mesh, n_batches: int = 64):
  import jax
  import jax.numpy as jnp

  from merjax.config import ModelConfig, TrainConfig
  from merjax.models import Fusion
  inputs = jax.random.normal(jax.random.key(0), (batch * n_batches, FEATURES_WIDTH), jnp.float32)
  return _case(Fusion(ModelConfig()), inputs,
               TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=batch),
               batch=batch, mesh=mesh, n_batches=n_batches)


def _case(model, inputs, config, *, batch: int, mesh, n_batches: int):
  import jax
  import jax.numpy as jnp

  from merjax import parallel
  from merjax.train.state import create_state
  from merjax.train.steps import jit_train_step, mesh_train_step

  state = create_state(model, inputs[:1], config, rng=jax.random.key(1))
  rng = jax.random.key(2)
  batches = []
  for i in range(n_batches):
    rows = slice(i * batch, (i + 1) * batch)
    batches.append({"inputs": inputs[rows], "label": jnp.arange(batch, dtype=jnp.int32) % 4,
                    "mask": jnp.ones((batch,), jnp.float32)})
  if mesh is None:
    step = jit_train_step
    batches = jax.device_put(batches)
  else:
    step = mesh_train_step(mesh)
    state, rng = parallel.replicate(state, mesh), parallel.replicate(rng, mesh)
    batches = [parallel.shard_batch(b, mesh) for b in batches]
  return step, state, batches, rng


class _Runner:
  """Runs one case's steps, keeping its (donated) state between calls.

  With several CPU devices every step is awaited before the next is dispatched: XLA:CPU's
  in-process all-reduce blocks pool threads, and a queue of small data-parallel steps can
  starve a device of threads until the collective's 40 s timeout aborts the process.
  """

  def __init__(self, step, state, batches, rng, *, batch: int, sync: bool = False):
    self.step, self.state, self.batches, self.rng, self.batch = step, state, batches, rng, batch
    self.sync = sync
    self.run(1)  # compile

  def run(self, steps: int) -> float:
    """Samples per second over ``steps`` steps."""
    import jax
    start = time.perf_counter()
    metrics = None
    for i in range(steps):
      self.state, metrics = self.step(self.state, self.batches[i % len(self.batches)], self.rng)
      if self.sync:
        jax.block_until_ready(metrics)
    jax.block_until_ready((self.state, metrics))
    return steps * self.batch / (time.perf_counter() - start)


def _interleaved(runners: dict[str, Callable[[], float]], *, repeats: int
                 ) -> dict[str, list[float]]:
  """Throughputs of every runner, alternating between them ``repeats`` times."""
  rates = {name: [] for name in runners}
  for _ in range(repeats):
    for name, run in runners.items():
      rates[name].append(run())
  return rates


def _summary(rates: list[float]) -> dict[str, Any]:
  return {"ours": statistics.median(rates), "range": [min(rates), max(rates)]}


def measure(*, devices: int, impls: list[str], batches: list[int], cnn_steps: int,
            fusion_steps: int, repeats: int, frames: int, n_mels: int, dtype: str,
            keras: bool) -> list[dict[str, Any]]:
  """Throughputs on ``devices`` devices of this process (1: no mesh) as raw result dicts."""
  import jax

  from merjax import parallel
  mesh = None if devices == 1 else parallel.make_data_mesh(devices=devices)
  sync = mesh is not None and jax.default_backend() == "cpu"
  results = []
  for batch in batches:
    runners = {}
    for impl in impls:
      runner = _Runner(*_cnn_case(impl, batch=batch, frames=frames, n_mels=n_mels, dtype=dtype,
                                  mesh=mesh), batch=batch, sync=sync)
      runners[impl] = lambda r=runner: r.run(cnn_steps)
    if keras:
      runners["keras"] = _keras_runner(batch=batch, frames=frames, n_mels=n_mels,
                                       steps=cnn_steps)
    rates = _interleaved(runners, repeats=repeats)
    for name, values in rates.items():
      results.append({"case": "cnn_train", "impl": name, "devices": devices, "batch": batch,
                      "rates": values})
    fusion = _Runner(*_fusion_case(batch=batch, mesh=mesh), batch=batch, sync=sync)
    runners = {"fast": lambda r=fusion: r.run(fusion_steps)}
    if keras:
      runners["keras"] = _keras_fusion_runner(batch=batch, steps=fusion_steps)
    for name, values in _interleaved(runners, repeats=repeats).items():
      results.append({"case": "fusion_train", "impl": name, "devices": devices, "batch": batch,
                      "rates": values})
  return results


def _keras_runner(*, batch: int, frames: int, n_mels: int, steps: int) -> Callable[[], float]:
  import keras_cnn
  model, x, y = keras_cnn.training_data(batch=batch, frames=frames, n_mels=n_mels)
  return lambda: keras_cnn.timed_steps(model, x, y, steps=steps)


def _keras_fusion_runner(*, batch: int, steps: int) -> Callable[[], float]:
  import keras_cnn
  model, x, y = keras_cnn.fusion_training_data(batch=batch, width=FEATURES_WIDTH)
  return lambda: keras_cnn.timed_steps(model, x, y, steps=steps)


def _keras_usable() -> bool:
  """Keras is a fair reference when installed and our backend is the CPU it runs on."""
  import jax
  import keras_cnn
  return keras_cnn.available() and jax.default_backend() == "cpu"


def _child_results(args, devices: int, *, keras: bool) -> dict[str, Any] | None:
  """One device count's results, measured in a child process of its own.

  The parent never starts a JAX backend: on a GPU it would preallocate most of the memory
  that the child needs. Each child sees ``devices`` virtual CPU devices (the flag only
  affects the CPU platform, so on an accelerator the child trains on the real devices).

  Returns:
    ``{"machine": ..., "results": [...]}``, or None when there are too few devices.
  """
  env = dict(os.environ)
  flags = env.get("XLA_FLAGS", "")
  env["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={devices}".strip()
  impls = args.impl if devices == 1 else args.multi_device_impl
  command = [sys.executable, os.path.abspath(__file__), "--worker-devices", str(devices),
             *_forwarded(args, impls=impls), *([] if keras else ["--no-keras"])]
  out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
  if out.returncode != 0:
    raise RuntimeError(f"the {devices}-device run failed (exit {out.returncode}):\n"
                       f"{out.stderr[-3000:]}")
  if out.stderr.strip():
    print(out.stderr.strip()[-2000:], file=sys.stderr)
  return json.loads(out.stdout.strip().splitlines()[-1])


def _worker(args, common: dict[str, Any]) -> dict[str, Any] | None:
  """The child's measurement on ``--worker-devices`` devices of its default backend."""
  import jax
  from _common import machine_info
  backend = jax.default_backend()
  if jax.device_count() < args.worker_devices:
    print(f"skipping {args.worker_devices} devices: only {jax.device_count()} {backend} "
          "device(s)", file=sys.stderr)
    return None
  if common["cnn_steps"] is None:
    # Off CPU a step takes milliseconds: 50 steps so dispatch and sync do not dominate. On
    # CPU one CNN step takes seconds (fast) to tens of seconds (plain), so 3 already do.
    common = {**common, "cnn_steps": 3 if backend == "cpu" else 50}
  keras = not args.no_keras and _keras_usable()
  keras_name = None
  if keras:
    import keras_cnn
    keras_name = keras_cnn.versions()
  results = measure(devices=args.worker_devices, keras=keras, **common)
  return {"machine": machine_info(), "results": results, "keras_name": keras_name}


def _forwarded(args, *, impls: list[str]) -> list[str]:
  steps = [] if args.cnn_steps is None else ["--cnn-steps", str(args.cnn_steps)]
  return ["--impl", *impls, "--batch", *map(str, args.batch), *steps,
          "--fusion-steps", str(args.fusion_steps), "--repeats", str(args.repeats),
          "--frames", str(args.frames), "--n-mels", str(args.n_mels), "--dtype", args.dtype]


def _rows(results: list[dict[str, Any]], *, keras_name: str | None) -> list[dict[str, Any]]:
  """Result dicts -> table rows, each with its reference and ratio."""
  by_key = {(r["case"], r["impl"], r["devices"], r["batch"]): r for r in results}
  rows = []
  for r in results:
    if r["impl"] == "keras":
      continue
    summary = _summary(r["rates"])
    extra = {"impl": r["impl"], "devices": r["devices"], "batch": r["batch"],
             "range": [round(v, 3) for v in summary["range"]]}
    keras = by_key.get((r["case"], "keras", 1, r["batch"]))
    if r["devices"] > 1:
      base = by_key.get((r["case"], r["impl"], 1, r["batch"]))
      reference = _summary(base["rates"])["ours"] if base else None
      name = f"{r['impl']} on 1 device" if base else None
    elif keras is not None:
      reference, name = _summary(keras["rates"])["ours"], keras_name
    elif r["impl"] == "fast" and (r["case"], "plain", 1, r["batch"]) in by_key:
      reference = _summary(by_key[(r["case"], "plain", 1, r["batch"])]["rates"])["ours"]
      name = "plain (flax.linen layers)"
    else:
      reference, name = None, None
    plain = by_key.get((r["case"], "plain", r["devices"], r["batch"]))
    if r["impl"] == "fast" and plain is not None:
      extra["vs_plain"] = round(summary["ours"] / _summary(plain["rates"])["ours"], 3)
    rows.append(row(r["case"], unit="samples/s", ours=summary["ours"], reference=reference,
                    reference_name=name, higher_is_better=True, **extra))
  for r in results:
    if r["impl"] == "keras":
      summary = _summary(r["rates"])
      rows.append(row(r["case"], unit="samples/s", ours=summary["ours"], reference=None,
                      reference_name=None, impl=f"keras ({keras_name})", devices=1,
                      batch=r["batch"], range=[round(v, 3) for v in summary["range"]]))
  return rows


def main(argv=None) -> None:
  p = parser(__doc__.splitlines()[0])
  p.add_argument("--impl", nargs="+", default=["fast", "plain"], choices=["fast", "plain"],
                 help="CNN implementations to time (ModelConfig.cnn_impl)")
  p.add_argument("--batch", nargs="+", type=int, default=[32],
                 help="batch sizes (global batch on several devices)")
  p.add_argument("--devices", nargs="+", type=int, default=[1, 8],
                 help="device counts; counts above 1 run in a child process")
  p.add_argument("--multi-device-impl", nargs="+", default=["fast"], choices=["fast", "plain"],
                 help="implementations timed on several devices (default: fast; the plain CNN "
                      "on 8 virtual devices of a 2-core CPU can exceed XLA's 40 s collective "
                      "timeout)")
  p.add_argument("--cnn-steps", type=int, default=None,
                 help="CNN steps per timed repeat (default: 50 on accelerators, 3 on CPU)")
  p.add_argument("--fusion-steps", type=int, default=200,
                 help="fusion steps per timed repeat")
  p.add_argument("--repeats", type=int, default=3, help="timed repeats per implementation")
  p.add_argument("--frames", type=int, default=938, help="log-mel frames per clip")
  p.add_argument("--n-mels", type=int, default=128, help="mel bands")
  p.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32",
                 help="compute dtype (ModelConfig.dtype)")
  p.add_argument("--no-keras", action="store_true", help="skip the Keras reference")
  p.add_argument("--worker-devices", type=int, default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)

  common = dict(impls=args.impl, batches=args.batch, cnn_steps=args.cnn_steps,
                fusion_steps=args.fusion_steps, repeats=args.repeats, frames=args.frames,
                n_mels=args.n_mels, dtype=args.dtype)
  if args.worker_devices is not None:
    print(json.dumps(_worker(args, common)))
    return

  results, machine, keras_name = [], None, None
  for devices in sorted(set(args.devices)):
    try:
      child = _child_results(args, devices, keras=devices == 1 and not args.no_keras)
    except RuntimeError as error:  # keep the rows measured so far
      print(f"train benchmark: {error}", file=sys.stderr)
      continue
    if child is None:
      continue
    results += child["results"]
    machine = machine or child["machine"]
    keras_name = keras_name or child["keras_name"]
  if machine is None:
    raise SystemExit("train benchmark: no device count could be measured")
  emit("train", _rows(results, keras_name=keras_name), as_json=args.json,
       markdown=args.markdown, extra_columns=("impl", "devices", "batch", "range", "vs_plain"),
       machine=machine)


if __name__ == "__main__":
  main()
