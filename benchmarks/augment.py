"""The four augmentations and augment-then-mel (merjax, batched, jitted) against librosa per clip.

Run: python benchmarks/augment.py [--json] [--markdown PATH] [--batch 1 8 32 64]. Rows: cases
``time_shift``, ``power_shift``, ``time_stretch``, ``pitch_shift`` and ``augment_then_mel`` for
30 s clips at 16 kHz and each batch size, in seconds per clip. Parameters are drawn from the
paper's ranges (one per clip) and are the same for both sides. The reference loops over the
batch, or over 4 of its clips for the slow librosa cases (their cost per clip does not depend on
the batch): librosa 0.11 for the stretch and pitch shift (its default soxr resampler, as in the
paper; rows also carry ``reference_fft``, the ``res_type="fft"`` variant that merjax equals),
numpy for the time and power shifts, and for ``augment_then_mel`` the four librosa transforms plus
five melspectrogram + power_to_db calls per clip (merjax: ``augment_log_mel``, which returns the
same five log-mels, its parameters drawn on the device from the same ranges).
"""

from __future__ import annotations

import jax
import librosa
import numpy as np
from _common import emit, parser, row, time_call

SAMPLE_RATE = 16000
SECONDS = 30.0
BATCHES = (1, 8, 32, 64)
SLOW_REFERENCE_CLIPS = 4


def clips(batch: int, seed: int = 0) -> np.ndarray:
  """Harmonic tones plus noise, float32, like decoded 30 s clips."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
  out = np.empty((batch, t.size), np.float32)
  base = [sum(np.sin(2 * np.pi * f * h * t) / h for f in rng.uniform(100, 800, 3)
              for h in (1, 2, 3)) for _ in range(min(batch, 4))]
  for i in range(batch):
    out[i] = 0.1 * base[i % len(base)] + 0.01 * rng.standard_normal(t.size)
  return out


def parameters(batch: int, seed: int = 1) -> dict[str, np.ndarray]:
  rng = np.random.default_rng(seed)
  return {"time_shift": rng.uniform(-5, 5, batch), "pitch_shift": rng.uniform(-2, 2, batch),
          "time_stretch": rng.uniform(0.5, 1.5, batch), "power_shift": rng.uniform(-10, 10, batch)}


def reference_transform(name: str, y: np.ndarray, value: float, *, res_type: str = "soxr_hq"):
  n = y.size
  if name == "time_shift":
    shift, out = int(round(value * SAMPLE_RATE)), np.zeros_like(y)
    if shift >= 0:
      out[shift:] = y[:n - shift]
    else:
      out[:n + shift] = y[-shift:]
    return out
  if name == "power_shift":
    return y * np.float32(10 ** (value / 20))
  if name == "time_stretch":
    return librosa.util.fix_length(librosa.effects.time_stretch(y, rate=value), size=n)
  return librosa.effects.pitch_shift(y, sr=SAMPLE_RATE, n_steps=value, res_type=res_type)


def reference_log_mel(y: np.ndarray) -> np.ndarray:
  return librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE), ref=1.0,
                             amin=1e-10, top_db=80.0)


def transform_row(name: str, waveforms: np.ndarray, device_waveforms: jax.Array,
                  drawn: dict[str, np.ndarray], *, repeats: int, librosa_name: str) -> dict:
  """One transform on one batch: merjax (batched, on the device) against the per-clip reference."""
  from merjax import audio

  batch = len(waveforms)
  slow = name in ("time_stretch", "pitch_shift")
  some = range(min(batch, SLOW_REFERENCE_CLIPS) if slow else batch)
  ours = time_call(lambda: audio.apply_transform(device_waveforms, drawn[name],
                                                 transform=name).block_until_ready(),
                   repeats=repeats) / batch
  reference = time_call(lambda: [reference_transform(name, waveforms[i], drawn[name][i])
                                 for i in some], repeats=1, warmup=1) / len(some)
  extra = {}
  if name == "pitch_shift":
    extra["reference_fft"] = time_call(
        lambda: [reference_transform(name, waveforms[i], drawn[name][i], res_type="fft")
                 for i in some], repeats=1, warmup=0) / len(some)
  return row(name, unit="s/clip", ours=ours, reference=reference,
             reference_name=librosa_name if slow else f"numpy {np.__version__}", batch=batch,
             **extra)


def augment_then_mel_row(waveforms: np.ndarray, device_waveforms: jax.Array,
                         drawn: dict[str, np.ndarray], *, repeats: int,
                         librosa_name: str) -> dict:
  """``augment_log_mel`` on one batch against the librosa transforms and log-mels per clip."""
  from merjax import audio

  batch = len(waveforms)
  key = jax.random.key(0)
  ours = time_call(lambda: jax.block_until_ready(audio.augment_log_mel(key, device_waveforms)),
                   repeats=repeats) / batch
  some = range(min(batch, SLOW_REFERENCE_CLIPS))

  def reference_all():
    for i in some:
      y = waveforms[i]
      variants = [y] + [reference_transform(name, y, drawn[name][i]) for name in drawn]
      for v in variants:
        reference_log_mel(v)

  reference = time_call(reference_all, repeats=1, warmup=0) / len(some)
  return row("augment_then_mel", unit="s/clip", ours=ours, reference=reference,
             reference_name=librosa_name, batch=batch)


def main() -> None:
  args = parser(__doc__.splitlines()[0], batches=BATCHES).parse_args()
  librosa_name = f"librosa {librosa.__version__}"
  rows = []
  for batch in args.batch:
    waveforms = clips(batch)
    device_waveforms = jax.device_put(waveforms)
    drawn = parameters(batch)
    repeats = 2 if batch < 32 else 1
    for name in ("time_shift", "power_shift", "time_stretch", "pitch_shift"):
      rows.append(transform_row(name, waveforms, device_waveforms, drawn, repeats=repeats,
                                librosa_name=librosa_name))
    rows.append(augment_then_mel_row(waveforms, device_waveforms, drawn, repeats=repeats,
                                     librosa_name=librosa_name))
  emit("augment", rows, as_json=args.json, markdown=args.markdown, extra_columns=("batch",))

if __name__ == "__main__":
  main()
