"""log_mel (merjax, jitted, batched) against librosa's melspectrogram + power_to_db per clip.

Run: python benchmarks/spectral.py [--json] [--batch 1 8 32 64]. Rows: case ``log_mel``, seconds
per 30 s clip at 16 kHz for each batch size; librosa loops over the same clips.
"""

from __future__ import annotations

import jax
import librosa
import numpy as np
from _common import emit, parser, row, time_call

SAMPLE_RATE = 16000
SECONDS = 30.0
BATCHES = (1, 8, 32, 64)


def clips(batch: int, seed: int = 0) -> np.ndarray:
  """Harmonic tones plus noise, float32, like a decoded 30 s clip."""
  rng = np.random.default_rng(seed)
  t = np.arange(int(SECONDS * SAMPLE_RATE)) / SAMPLE_RATE
  out = np.empty((batch, t.size), np.float32)
  for i in range(batch):
    f0 = rng.uniform(100, 800, size=4)
    y = sum(np.sin(2 * np.pi * f * h * t) / h for f in f0 for h in (1, 2, 3))
    out[i] = 0.1 * y + 0.01 * rng.standard_normal(t.size)
  return out


def main() -> None:
  args = parser(__doc__.splitlines()[0], batches=BATCHES).parse_args()
  from merjax.audio import log_mel

  rows = []
  for batch in args.batch:
    waveforms = clips(batch)
    device_waveforms = jax.device_put(waveforms)
    ours = time_call(lambda w=device_waveforms: log_mel(w).block_until_ready()) / batch

    def reference(waveforms=waveforms):
      for y in waveforms:
        librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SAMPLE_RATE), ref=1.0,
                            amin=1e-10, top_db=80.0)

    reference_time = time_call(reference, repeats=2) / batch
    rows.append(row("log_mel", unit="s/clip", ours=ours, reference=reference_time,
                    reference_name=f"librosa {librosa.__version__}", batch=batch))
  emit("spectral", rows, as_json=args.json, markdown=args.markdown, extra_columns=("batch",))


if __name__ == "__main__":
  main()
