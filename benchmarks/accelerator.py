"""One prepared accelerator check: the CNN stage's compiled step, its inputs and a short fit.

Measured side by side in one run (DESIGN.md §5 cases, every row with ``dtype``, ``impl``,
``batch`` and ``devices``):

- ``cnn_step``: the compiled CNN train step (:func:`merjax.train.steps.train_step`, donated
  state) for every batch x float32/bfloat16 x fast/plain, samples/s over ``--steps`` steps; each
  row also carries the compiled HLO's checks (``host_callbacks``: custom calls into Python,
  ``donated``: an input/output alias), ``cost_analysis()`` ``gflops`` and ``gbytes`` per step,
  and ``prng`` (``threefry`` here, ``unsafe_rbg`` in a child process: what dropout's random bits
  cost). ``fast`` rows carry ``reference`` = the ``plain`` row; the float32 fast row also
  ``max_diff_logits`` and ``max_diff_grads`` (fast vs plain at highest matmul precision,
  relative to the largest value), bfloat16 rows ``loss`` (must be finite).
- ``waveform_step``: the whole waveform-to-gradient step of the ``waveforms`` pipeline
  (offline augmentation with per-example keys + log-mel + z-normalisation + CNN), samples/s.
- ``log_mel`` and ``augment_log_mel``: s/clip on the device, with ``max_diff_db``,
  ``p99_diff_db`` and ``median_diff_db`` against the same function on the CPU backend (for the
  augmentation: with the device's resampler, and ``*_vs_fft_db`` against the exact FFT
  resampler, the CPU default; the first 4 clips), and librosa's time per clip as the
  reference where librosa is installed.
- ``fit_epoch``: 2-epoch :func:`merjax.train.fit` runs under ``jax.transfer_guard("disallow")``
  of the CNN stage with offline x5 augmentation, ``pipeline`` ``waveforms`` (made inside the
  step every epoch) and ``precomputed`` (made once before, ``precompute_s``); s/epoch of the
  second epoch. ``--only-fit --fit-clips N`` runs just this comparison (the CPU measurement).

Every row has ``peak_gib``, the device's peak memory so far (``memory_stats()``; None where the
platform reports none). ``--quick`` shrinks everything to run on a CPU in a few minutes (tested
by tests/test_accelerator_benchmark.py). On a GPU box without librosa, prepare the wheels with
``python benchmarks/accelerator_wheels.py fetch`` and run ``... run`` there (see that script).
Imports only jax, flax, optax, numpy (and librosa if present): no grain, TFDS or Ray.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import Any

from _common import emit, parser, row

CHILD_FLAG = "--prng-child"


def _peak_gib() -> float | None:
  import jax
  stats = jax.local_devices()[0].memory_stats() if hasattr(jax.local_devices()[0],
                                                           "memory_stats") else None
  if not stats or "peak_bytes_in_use" not in stats:
    return None
  return stats["peak_bytes_in_use"] / 2 ** 30


def _block(tree):
  import jax
  return jax.block_until_ready(tree)


def _hlo_checks(compiled) -> dict[str, Any]:
  text = compiled.as_text()
  cost = compiled.cost_analysis()
  if isinstance(cost, (list, tuple)):
    cost = cost[0] if cost else {}
  cost = cost or {}
  callbacks = any(marker in text for marker in ("xla_python_cpu_callback",
                                                "xla_python_gpu_callback", "xla_ffi_python",
                                                "host_callback"))
  return {"host_callbacks": callbacks, "donated": "input_output_alias" in text,
          "gflops": cost.get("flops", 0.0) / 1e9 if cost.get("flops") else None,
          "gbytes": cost.get("bytes accessed", 0.0) / 1e9 if cost.get("bytes accessed") else None}


def _cnn(impl: str, dtype: str):
  from merjax.config import ModelConfig
  from merjax.models import CNN
  return CNN(ModelConfig(cnn_impl=impl, dtype=dtype))


def _state(model, inputs):
  import jax

  from merjax.config import TrainConfig
  from merjax.train.state import create_state
  return create_state(model, inputs[:1], TrainConfig(optimizer="sgd", learning_rate=1e-2),
                      rng=jax.random.key(0))


def _throughput(step, state, batch, rng, *, steps: int) -> tuple[float, Any, Any]:
  state, metrics = step(state, batch, rng)  # compiled and warm
  _block(metrics)
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch, rng)
  _block((state, metrics))
  return steps * batch["label"].shape[0] / (time.perf_counter() - start), state, metrics


def _mel_batch(batch: int, frames: int):
  import jax
  import jax.numpy as jnp
  inputs = jax.random.normal(jax.random.key(1), (batch, 128, frames), jnp.float32)
  return {"inputs": inputs, "label": (jnp.arange(batch) % 4).astype(jnp.int32),
          "mask": jnp.ones((batch,), jnp.float32)}


def cnn_step_rows(*, batches, steps: int, frames: int, prng: str,
                  dtypes=("float32", "bfloat16")) -> list[dict]:
  """The compiled CNN train step for every batch x dtype x impl."""
  import jax

  from merjax.train.steps import jit_train_step
  rows = []
  for batch_size in batches:
    batch = _mel_batch(batch_size, frames)
    for dtype in dtypes:
      measured = {}
      for impl in ("plain", "fast"):
        state = _state(_cnn(impl, dtype), batch["inputs"])
        rng = jax.random.key(2)
        checks = _hlo_checks(jit_train_step.lower(state, batch, rng).compile())
        rate, state, metrics = _throughput(jit_train_step, state, batch, rng, steps=steps)
        measured[impl] = rate
        extra: dict[str, Any] = {}
        if dtype == "bfloat16":
          loss = float(metrics["loss_sum"]) / float(metrics["count"])
          extra["loss"] = loss
          extra["finite"] = bool(abs(loss) < float("inf"))
        rows.append(row("cnn_step", dtype=dtype, impl=impl, batch=batch_size, devices=1,
                        prng=prng, **checks, **extra, unit="samples/s", ours=rate,
                        reference=measured.get("plain") if impl == "fast" else None,
                        reference_name="plain" if impl == "fast" else None,
                        higher_is_better=True, peak_gib=_peak_gib()))
  return rows


def fast_equals_plain(*, batch: int, frames: int) -> dict[str, float]:
  """Largest |fast - plain| of logits and gradients (float32, highest precision), relative."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  data = _mel_batch(batch, frames)
  plain = _cnn("plain", "float32")
  variables = _state(plain, data["inputs"]).variables

  def outputs(model):
    def loss(params):
      logits, _ = model.apply({**variables, "params": params}, data["inputs"], train=True,
                              mask=data["mask"], rngs={"dropout": jax.random.key(3)},
                              mutable=["batch_stats"])
      return jnp.mean(logits ** 2), logits
    (_, logits), grads = jax.value_and_grad(loss, has_aux=True)(variables["params"])
    return logits, grads

  with jax.default_matmul_precision("highest"):
    (logits_p, grads_p), (logits_f, grads_f) = jax.device_get(
        (jax.jit(lambda: outputs(plain))(), jax.jit(lambda: outputs(_cnn("fast", "float32")))()))

  def rel(a, b):  # the largest difference over the largest value, across all leaves
    a, b = jax.tree.leaves(a), jax.tree.leaves(b)
    scale = max(float(np.max(np.abs(y))) for y in b)
    return max(float(np.max(np.abs(x - y))) for x, y in zip(a, b)) / max(scale, 1e-30)

  return {"max_diff_logits": rel(logits_f, logits_p), "max_diff_grads": rel(grads_f, grads_p)}


def _clips(n: int, seconds: float):
  import numpy as np
  rng = np.random.default_rng(0)
  t = np.arange(int(seconds * 16000)) / 16000
  freqs = rng.uniform(100, 2000, size=(n, 3))
  waves = sum(np.sin(2 * np.pi * freqs[:, k:k + 1] * t) / (k + 1) for k in range(3))
  return (0.2 * waves + 0.01 * rng.standard_normal((n, t.size))).astype(np.float32)


def _waveform_source(clips, augment_mode: str = "offline"):
  import numpy as np

  from merjax.batches.augmented import WaveformTraining
  from merjax.config import AudioConfig, AugmentConfig
  audio = AudioConfig(clip_seconds=clips.shape[1] / 16000)
  return WaveformTraining(waveforms=clips, labels=(np.arange(len(clips)) % 4).astype(np.int32),
                          audio=audio, augment=AugmentConfig(mode=augment_mode, seed=0),
                          mel_mean=-40.0, mel_std=20.0)


def waveform_step_row(*, batch: int, steps: int, seconds: float) -> dict:
  import jax

  from merjax import parallel
  from merjax.train.steps import jit_train_step
  source = _waveform_source(_clips(batch, seconds))
  mesh = parallel.make_data_mesh(devices=1)
  packed = next(source.batches(batch_size=batch, seed=0, mesh=mesh).epoch(0))
  model = _cnn("plain" if jax.default_backend() != "cpu" else "fast", "float32")
  frames = source.audio.frames
  state = _state(model, _mel_batch(1, frames)["inputs"])
  state = state.replace(apply_fn=source.front_end(state.apply_fn, mesh=mesh))
  batch_dict = {k: packed[k] for k in ("inputs", "label", "mask")}
  checks = _hlo_checks(jit_train_step.lower(state, batch_dict, jax.random.key(0)).compile())
  rate, _, _ = _throughput(jit_train_step, state, batch_dict, jax.random.key(0), steps=steps)
  from merjax.audio.augment import _resolve_resampler
  resampler = _resolve_resampler("auto")
  return row("waveform_step", dtype="float32", impl=model.config.cnn_impl, batch=batch,
             devices=1, resampler=resampler, **checks, unit="samples/s", ours=rate,
             reference=None, reference_name=None, higher_is_better=True, peak_gib=_peak_gib())


def _diffs(got, expected) -> dict[str, float]:
  import numpy as np
  d = np.abs(np.asarray(got, np.float64) - np.asarray(expected, np.float64))
  return {"max_diff_db": float(d.max()), "p99_diff_db": float(np.quantile(d, 0.99)),
          "median_diff_db": float(np.median(d))}


def _librosa_time(clips, fn) -> float | None:
  try:
    import librosa  # noqa: F401
  except ImportError:
    return None
  fn(clips[0])  # librosa's numba functions compile on first use
  start = time.perf_counter()
  for clip in clips:
    fn(clip)
  return (time.perf_counter() - start) / len(clips)


def spectral_rows(*, batch: int, seconds: float, repeats: int) -> list[dict]:
  import jax
  import numpy as np

  from merjax.audio import augment_log_mel, log_mel
  from merjax.config import AugmentConfig
  clips = _clips(batch, seconds)
  on_device = jax.device_put(clips)
  cpu = jax.devices("cpu")[0]
  on_cpu = jax.device_put(clips, cpu)
  rows = []

  def timed(fn, *args):
    _block(fn(*args))
    best = float("inf")
    for _ in range(repeats):
      start = time.perf_counter()
      _block(fn(*args))
      best = min(best, time.perf_counter() - start)
    return best / batch

  mel = jax.jit(log_mel)
  ours = timed(mel, on_device)
  with jax.default_device(cpu):
    expected = np.asarray(jax.jit(log_mel)(on_cpu))  # the same function on the CPU backend

  def librosa_mel(clip):
    import librosa
    librosa.power_to_db(librosa.feature.melspectrogram(y=clip, sr=16000), ref=1.0, top_db=80.0)

  reference = _librosa_time(clips[:2], librosa_mel)
  rows.append(row("log_mel", dtype="float32", impl="jax", batch=batch, devices=1,
                  **_diffs(mel(on_device), expected), unit="s/clip", ours=ours,
                  reference=reference, reference_name="librosa (host)" if reference else None,
                  peak_gib=_peak_gib()))

  augment = AugmentConfig()
  keys = jax.random.split(jax.random.key(0), batch)
  from merjax.audio.augment import _resolve_resampler
  resampler = _resolve_resampler("auto")

  def variants(k, w, resampler="auto"):
    return augment_log_mel(k, w, transforms=augment.transforms, resampler=resampler)[0]

  fn = jax.jit(variants)
  ours = timed(fn, keys, on_device)
  checked = min(batch, 4)  # the CPU references run on a few clips only
  got = fn(keys, on_device)
  names = sorted(got)
  got = np.stack([np.asarray(got[n])[:checked] for n in names])
  reference = {}
  with jax.default_device(cpu):
    for name in {resampler, "fft"}:
      out = jax.jit(variants, static_argnames="resampler")(
          jax.device_put(keys[:checked], cpu), on_cpu[:checked], resampler=name)
      reference[name] = np.stack([np.asarray(out[n]) for n in names])
  diffs = _diffs(got, reference[resampler])
  exact = _diffs(got, reference["fft"])
  diffs.update({f"{key.replace('_db', '')}_vs_fft_db": value for key, value in exact.items()})

  def librosa_augment(clip):
    import librosa
    for variant in (np.roll(clip, 8000), librosa.effects.pitch_shift(clip, sr=16000, n_steps=1.0),
                    librosa.effects.time_stretch(clip, rate=1.2), clip * 2.0):
      librosa.power_to_db(librosa.feature.melspectrogram(y=variant, sr=16000), ref=1.0)

  reference = _librosa_time(clips[:1], librosa_augment)
  rows.append(row("augment_log_mel", dtype="float32", impl="jax", batch=batch, devices=1,
                  resampler=resampler, variants=len(names), checked_clips=checked, **diffs,
                  unit="s/clip", ours=ours, reference=reference,
                  reference_name="librosa (host)" if reference else None, peak_gib=_peak_gib()))
  return rows


def fit_epoch_rows(*, clips: int, batch: int, seconds: float) -> list[dict]:
  """2-epoch fits under the transfer guard: the ``waveforms`` pipeline (offline x5 made inside
  the step) and the ``precomputed`` one (the x5 log-mels made first, ``precompute_s``)."""
  import contextlib

  import jax

  from merjax import parallel
  from merjax.batches.augmented import offline_training_set
  from merjax.config import TrainConfig
  from merjax.inputs.log_mel import log_mels
  from merjax.train import stages, train_classifier
  source = _waveform_source(_clips(clips, seconds))
  train_mels = (log_mels(source.waveforms, audio=source.audio) - source.mel_mean) / source.mel_std
  val = {"inputs": train_mels[:batch], "label": source.labels[:batch]}
  config = TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=batch, max_epochs=2,
                       patience=5, train_accuracy_stop=None)
  model = _cnn("plain" if jax.default_backend() != "cpu" else "fast", "float32")

  @contextlib.contextmanager
  def guarded():
    plain_fit = stages.fit

    def guarded_fit(*args, **kwargs):
      with jax.transfer_guard("disallow"):
        return plain_fit(*args, **kwargs)

    stages.fit = guarded_fit
    try:
      yield
    finally:
      stages.fit = plain_fit

  mesh = parallel.make_data_mesh(devices=1)
  with guarded():
    waveforms = train_classifier(model, train=val, val=val, config=config, mesh=mesh,
                                 stage="cnn", log=None, cnn_training=source)
  start = time.perf_counter()
  mels, labels = offline_training_set(source.waveforms, source.labels, train_mels,
                                      audio=source.audio, augment=source.augment,
                                      mel_mean=source.mel_mean, mel_std=source.mel_std)
  precompute = time.perf_counter() - start
  with guarded():
    precomputed = train_classifier(model, train={"inputs": mels, "label": labels}, val=val,
                                   config=config, mesh=mesh, stage="cnn", log=None)
  common = dict(dtype="float32", impl=model.config.cnn_impl, batch=batch, devices=1,
                examples=source.size, clip_seconds=seconds, transfer_guard="disallow")
  epoch = {name: fit.history[-1]["seconds"] for name, fit in
           (("waveforms", waveforms), ("precomputed", precomputed))}
  return [row("fit_epoch", pipeline="precomputed", epochs=len(precomputed.history),
              precompute_s=precompute, **common, unit="s/epoch", ours=epoch["precomputed"],
              reference=None, reference_name=None, peak_gib=_peak_gib()),
          row("fit_epoch", pipeline="waveforms", epochs=len(waveforms.history), **common,
              unit="s/epoch", ours=epoch["waveforms"], reference=epoch["precomputed"],
              reference_name="precomputed", peak_gib=_peak_gib())]


def _prng_child(args) -> list[dict]:
  """The cnn_step rows with ``jax_default_prng_impl=unsafe_rbg``, from a fresh interpreter."""
  env = dict(os.environ, JAX_DEFAULT_PRNG_IMPL="unsafe_rbg")
  command = [sys.executable, os.path.abspath(__file__), CHILD_FLAG, "--steps", str(args.steps),
             "--frames", str(args.frames), "--batch", *map(str, args.batch)]
  if args.quick:
    command.append("--quick")
  out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
  if out.returncode != 0:
    raise RuntimeError(f"the unsafe_rbg child failed:\n{out.stderr[-3000:]}")
  return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
  p = parser(__doc__.splitlines()[0], batches=(32, 256))
  p.add_argument("--quick", action="store_true",
                 help="small sizes for a CPU check (a few minutes): batch 2, 3 s clips")
  p.add_argument("--steps", type=int, default=None, help="timed steps per case (default 50)")
  p.add_argument("--frames", type=int, default=None, help=argparse_suppress())
  p.add_argument("--fit-clips", type=int, default=None,
                 help="clips of the fit_epoch case (x5 examples; default 64, --quick 2)")
  p.add_argument("--only-fit", action="store_true",
                 help="run only the fit_epoch case (waveforms vs precomputed epoch time)")
  p.add_argument(CHILD_FLAG, action="store_true", help=argparse_suppress())
  args = p.parse_args()
  quick = args.quick
  if quick and args.batch == [32, 256] and not args.prng_child:
    args.batch = [2]
  args.steps = args.steps or (2 if quick else 50)
  seconds = 3.0 if quick else 30.0
  args.frames = args.frames or (1 + int(seconds * 16000) // 512)

  import jax
  if args.prng_child:  # --quick: float32 only, to stay within a few CPU minutes
    rows = cnn_step_rows(batches=args.batch, steps=args.steps, frames=args.frames,
                         prng="unsafe_rbg", dtypes=("float32",) if quick else
                         ("float32", "bfloat16"))
    print(json.dumps(rows))
    return

  if args.only_fit:
    rows = fit_epoch_rows(clips=args.fit_clips or (2 if quick else 64),
                          batch=2 if quick else 32, seconds=seconds)
    emit("accelerator", rows, as_json=args.json, markdown=args.markdown,
         extra_columns=("dtype", "impl", "batch", "devices", "pipeline", "examples",
                        "precompute_s"))
    return
  rows = cnn_step_rows(batches=args.batch, steps=args.steps, frames=args.frames,
                       prng="threefry")
  equal = fast_equals_plain(batch=min(args.batch), frames=args.frames)
  for r in rows:
    if r["impl"] == "fast" and r["dtype"] == "float32":
      r.update(equal)
  rows += _prng_child(args)
  wave_batch = 2 if quick else 32
  rows.append(waveform_step_row(batch=wave_batch, steps=max(1, args.steps // (2 if quick else 5)),
                                seconds=seconds))
  rows += spectral_rows(batch=2 if quick else 32, seconds=seconds, repeats=1 if quick else 3)
  rows += fit_epoch_rows(clips=args.fit_clips or (2 if quick else 64),
                         batch=2 if quick else 32, seconds=seconds)
  emit("accelerator", rows, as_json=args.json, markdown=args.markdown,
       extra_columns=("dtype", "impl", "batch", "devices", "prng", "host_callbacks", "donated",
                      "gflops", "gbytes", "max_diff_db", "peak_gib"))
  del jax


def argparse_suppress():
  import argparse
  return argparse.SUPPRESS


if __name__ == "__main__":
  main()
