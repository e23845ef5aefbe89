"""Essentia's ``MusicExtractor`` as a feature backend (optional extra ``merjax[essentia]``).

Every statistic Essentia offers is requested for the low-level, rhythm and tonal descriptors
(plus covariance and inverse covariance for MFCC and GFCC), and the aggregated pool is
flattened to named columns ``dimension.descriptor.statistic``, e.g.
``tone_colour.spectral_centroid.median`` or ``tone_colour.mfcc_03.mean``. Descriptors without a
fixed length (beat positions) and metadata are left out; the scale of each key estimate becomes
a 1/0 ``..._major`` column. The column set is read from a deterministic reference clip once per
process, so every clip yields the same columns (a descriptor missing for a clip is NaN).

Essentia is AGPL-3.0 licensed; it is only imported when this backend is used.

References:
  D. Bogdanov et al., "Essentia: an audio analysis library for music information retrieval",
  ISMIR 2013. https://essentia.upf.edu/streaming_extractor_music.html
"""

from __future__ import annotations

import functools
import os
import tempfile
from typing import Any

import numpy as np

from merjax.errors import MerjaxError

INSTALL_HINT = "pip install 'merjax[essentia]'"
STATISTICS: dict[str, str] = {
    "mean": "mean over frames", "var": "variance over frames",
    "stdev": "standard deviation over frames", "median": "median over frames",
    "min": "minimum over frames", "max": "maximum over frames",
    "skew": "skewness over frames", "kurt": "kurtosis over frames",
    "dmean": "mean of the first difference", "dvar": "variance of the first difference",
    "dmean2": "mean of the second difference", "dvar2": "variance of the second difference",
    "cov": "covariance entry over frames", "icov": "inverse covariance entry over frames",
    "value": "one value for the whole clip",
}
_FRAME_STATS = ["mean", "var", "stdev", "median", "min", "max", "skew", "kurt", "dmean",
                "dmean2", "dvar", "dvar2"]
_MATRIX_STATS = _FRAME_STATS + ["cov", "icov"]
_SKIP = ("metadata.", "rhythm.beats_position")
_ANALYSIS_SAMPLE_RATE = 44100.0  # MusicExtractor's default profile
# (prefix of the pool name without its top level, dimension) - first match wins.
_DIMENSIONS = (
    ("average_loudness", "dynamics"), ("dynamic_complexity", "dynamics"),
    ("loudness_ebu128", "dynamics"), ("spectral_rms", "dynamics"),
    ("spectral_energy", "dynamics"), ("pitch_salience", "melody"),
    ("dissonance", "harmony"), ("spectral_complexity", "texture"),
    ("silence_rate", "expressivity"),
)


def _essentia():
  try:
    import essentia
    essentia.log.infoActive = False  # else importing essentia.standard prints a notice
    import essentia.standard
  except ImportError as error:
    raise MerjaxError(
        f"the essentia feature backend needs Essentia, which is not installed "
        f"({error}); install it with: {INSTALL_HINT}") from None
  return essentia


def version() -> str:
  return str(_essentia().__version__)


def config(*, sample_rate: int = 16000) -> dict[str, Any]:
  """What determines this backend's output (part of the feature cache key)."""
  return {"backend": "essentia", "essentia": version(), "sample_rate": sample_rate,
          "analysis_sample_rate": _ANALYSIS_SAMPLE_RATE, "stats": _MATRIX_STATS,
          "skip": list(_SKIP)}


@functools.lru_cache(maxsize=1)
def _extractor():
  essentia = _essentia()
  return essentia.standard.MusicExtractor(
      analysisSampleRate=_ANALYSIS_SAMPLE_RATE, lowlevelStats=_FRAME_STATS,
      rhythmStats=_FRAME_STATS, tonalStats=_FRAME_STATS, mfccStats=_MATRIX_STATS,
      gfccStats=_MATRIX_STATS)


def _dimension(base: str, top: str) -> str:
  if top == "rhythm":
    return "rhythm"
  if top == "tonal":
    return "harmony"
  for prefix, dimension in _DIMENSIONS:
    if base.startswith(prefix):
      return dimension
  return "tone_colour"


def _flatten(pool) -> dict[str, tuple[float, str, str]]:
  """``{column: (value, dimension, description)}`` for every fixed-size numeric descriptor."""
  out = {}
  for key in sorted(pool.descriptorNames()):
    if key.startswith(_SKIP):
      continue
    value = pool[key]
    top, *rest = key.split(".")
    stat = rest[-1] if rest and rest[-1] in STATISTICS else "value"
    path = rest[:-1] if stat != "value" else rest
    base = "_".join(path) or top
    dimension = _dimension(base, top)
    what = f"Essentia {key.rsplit('.', 1)[0] if stat != 'value' else key}"
    if isinstance(value, str):
      if base.endswith("scale"):
        out[f"{dimension}.{base}_major.value"] = (
            float(value == "major"), dimension, f"{what}: 1 if major, 0 if minor")
      continue  # key names are categorical; their strengths are numeric columns already
    array = np.asarray(value, np.float64)
    if array.ndim == 0:
      out[f"{dimension}.{base}.{stat}"] = (float(array), dimension, f"{what}: {STATISTICS[stat]}")
    elif array.ndim == 1:
      width = len(str(len(array) - 1))
      for i, v in enumerate(array):
        out[f"{dimension}.{base}_{i:0{width}d}.{stat}"] = (
            float(v), dimension, f"{what} (element {i}): {STATISTICS[stat]}")
    elif array.ndim == 2:
      width = len(str(max(array.shape) - 1))
      for (i, j), v in np.ndenumerate(array):
        out[f"{dimension}.{base}.{stat}_{i:0{width}d}_{j:0{width}d}"] = (
            float(v), dimension, f"{what} ({i}, {j}): {STATISTICS[stat]}")
  return out


def _analyse(y: np.ndarray, sample_rate: int) -> dict[str, tuple[float, str, str]]:
  import soundfile as sf
  extractor = _extractor()
  y = np.asarray(y, np.float32)
  if y.ndim != 1 or len(y) == 0:
    raise MerjaxError(f"the essentia backend expects one non-empty mono clip, got shape {y.shape}")
  with tempfile.TemporaryDirectory(prefix="merjax-essentia-") as tmp:
    path = os.path.join(tmp, "clip.wav")  # MusicExtractor reads files only
    sf.write(path, y, sample_rate, subtype="FLOAT")
    try:
      pool, _ = extractor(path)
    except RuntimeError as error:
      raise MerjaxError(f"Essentia MusicExtractor failed on a {len(y) / sample_rate:.2f} s "
                        f"clip: {error}") from None
  return _flatten(pool)


@functools.lru_cache(maxsize=4)
def _reference(sample_rate: int) -> tuple[tuple[str, str, str], ...]:
  """Column names, dimensions and descriptions, read from a fixed synthetic clip."""
  from merjax.data.synthetic import clip
  y, _ = clip(0, 0, seconds=10.0, sample_rate=sample_rate, seed=0)
  return tuple((name, dim, text) for name, (_, dim, text) in _analyse(y, sample_rate).items())


def feature_names(*, sample_rate: int = 16000) -> list[str]:
  return [name for name, _, _ in _reference(sample_rate)]


def manifest(*, sample_rate: int = 16000) -> list[tuple[str, str, str]]:
  return list(_reference(sample_rate))


def extract(y: np.ndarray, *, sample_rate: int = 16000) -> np.ndarray:
  """Runs ``MusicExtractor`` on one clip.

  Args:
    y: mono waveform [shape=(samples,)].
    sample_rate: its sampling rate (Essentia resamples to 44.1 kHz for the analysis).

  Returns:
    [shape=(n_features,)] float32 in :func:`feature_names` order.
  """
  names = feature_names(sample_rate=sample_rate)
  values = _analyse(y, sample_rate)
  return np.array([values[n][0] if n in values else np.nan for n in names], np.float32)
