"""Seconds per 30 s clip of the feature backends on one CPU core, and their feature counts.

Rows: ``builtin`` and ``essentia`` (skipped, with a note, when Essentia is not installed).
Reference for both: the simple librosa feature set of the first extractor (MFCC, spectral
centroid, bandwidth, roll-off, flatness and contrast, chroma, RMS, zero-crossing rate, each
mean and std, and the tempo), computed with plain librosa calls that each run their own STFT,
as a straightforward script would. The builtin extractor computes about 8x more features from
one shared STFT.

The process is pinned to one core (and BLAS/OpenMP to one thread) before timing.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
import numpy as np  # noqa: E402
from _common import emit, parser, row, time_call  # noqa: E402


def _reference_features(y: np.ndarray, sr: int) -> np.ndarray:
  """The simple librosa set: 90 frame statistics and the tempo."""
  import librosa
  frames = [librosa.feature.mfcc(y=y, sr=sr, n_mfcc=20),
            librosa.feature.spectral_centroid(y=y, sr=sr),
            librosa.feature.spectral_bandwidth(y=y, sr=sr),
            librosa.feature.spectral_rolloff(y=y, sr=sr),
            librosa.feature.spectral_flatness(y=y),
            librosa.feature.spectral_contrast(y=y, sr=sr),
            librosa.feature.chroma_stft(y=y, sr=sr),
            librosa.feature.rms(y=y),
            librosa.feature.zero_crossing_rate(y)]
  stacked = np.concatenate(frames, axis=0)
  tempo = librosa.feature.tempo(y=y, sr=sr)
  return np.concatenate([stacked.mean(1), stacked.std(1), tempo]).astype(np.float32)


def _one_core() -> str:
  from threadpoolctl import threadpool_limits
  threadpool_limits(1)
  if hasattr(os, "sched_setaffinity"):
    core = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    return f"pinned to core {core}"
  return "BLAS limited to one thread (no CPU pinning on this platform)"


def _timed(fn, repeats: int) -> tuple[float, float]:
  """(best wall seconds, mean CPU seconds) of ``fn()``."""
  wall = time_call(fn, repeats=repeats, warmup=1)
  start = time.process_time()
  for _ in range(repeats):
    fn()
  return wall, (time.process_time() - start) / repeats


def main() -> None:
  p = parser(__doc__.splitlines()[0])
  p.add_argument("--repeats", type=int, default=3, help="timed runs per case (default 3)")
  args = p.parse_args()
  note = _one_core()

  from merjax.data.synthetic import clip
  from merjax.features import extract_features, feature_names
  sr = 16000
  y, _ = clip(0, 0, seconds=30.0, sample_rate=sr, seed=0)
  batch = y[None]

  import librosa
  ref_wall, ref_cpu = _timed(lambda: _reference_features(y, sr), args.repeats)
  ref_n = len(_reference_features(y, sr))
  reference_name = f"plain librosa {librosa.__version__} calls, {ref_n} features"

  rows = []
  wall, cpu = _timed(lambda: extract_features(batch, backend="builtin"), args.repeats)
  rows.append(row("builtin", unit="s/clip", ours=wall, reference=ref_wall,
                  reference_name=reference_name,
                  n_features=len(feature_names(backend="builtin")), cpu_s=cpu,
                  reference_cpu_s=ref_cpu))
  if importlib.util.find_spec("essentia") is None:
    print("essentia: skipped (not installed; pip install 'merjax[essentia]')", file=sys.stderr)
  else:
    n = len(feature_names(backend="essentia"))  # reads the reference clip once, untimed
    wall, cpu = _timed(lambda: extract_features(batch, backend="essentia"), args.repeats)
    rows.append(row("essentia", unit="s/clip", ours=wall, reference=ref_wall,
                    reference_name=reference_name, n_features=n, cpu_s=cpu,
                    reference_cpu_s=ref_cpu))
  if not args.json:
    print(f"# one 30 s clip at {sr} Hz, {note}")
  emit("features", rows, as_json=args.json, markdown=args.markdown,
       extra_columns=("n_features", "cpu_s"))


if __name__ == "__main__":
  main()
