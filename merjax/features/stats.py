"""Summary statistics that turn frame-wise descriptor series into clip-level features."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# The statistic part of a column name ``dimension.descriptor.statistic``, with its meaning.
STATISTICS: dict[str, str] = {
    "mean": "mean over frames",
    "std": "standard deviation over frames",
    "min": "minimum over frames",
    "max": "maximum over frames",
    "skew": "skewness over frames",
    "kurt": "excess kurtosis over frames",
    "p10": "10th percentile over frames",
    "median": "median over frames",
    "p90": "90th percentile over frames",
    "mean_abs": "mean absolute value over frames",
    "value": "one value for the whole clip",
}
FULL: tuple[str, ...] = ("mean", "std", "min", "max", "skew", "kurt", "p10", "median", "p90")
SHORT: tuple[str, ...] = ("mean", "std")
VALUE: tuple[str, ...] = ("value",)
_PERCENTILES = {"p10": 10.0, "median": 50.0, "p90": 90.0}


def summarize(x: np.ndarray, stats: Sequence[str]) -> np.ndarray:
  """Statistics of every row of ``x``.

  Skewness and kurtosis of a (numerically) constant row are 0 rather than undefined; an empty
  row gives NaN for every statistic.

  Args:
    x: descriptor series [shape=(rows, frames)].
    stats: names from :data:`STATISTICS` (not ``"value"``).

  Returns:
    [shape=(rows, len(stats))] float64.
  """
  x = np.asarray(x, np.float64)
  if x.ndim != 2:
    raise ValueError(f"summarize expects [rows, frames], got shape {x.shape}")
  rows, frames = x.shape
  if frames == 0:
    return np.full((rows, len(stats)), np.nan)
  mean = x.mean(axis=1)
  out = {"mean": mean}
  if {"std", "skew", "kurt"} & set(stats):
    centred = x - mean[:, None]
    var = np.mean(centred * centred, axis=1)
    std = np.sqrt(var)
    out["std"] = std
    flat = std <= 1e-7 * np.maximum(np.abs(mean), 1e-7)
    safe = np.where(flat, 1.0, std)
    if "skew" in stats:
      out["skew"] = np.where(flat, 0.0, np.mean(centred ** 3, axis=1) / safe ** 3)
    if "kurt" in stats:
      out["kurt"] = np.where(flat, 0.0, np.mean(centred ** 4, axis=1) / safe ** 4 - 3.0)
  if "min" in stats:
    out["min"] = x.min(axis=1)
  if "max" in stats:
    out["max"] = x.max(axis=1)
  if "mean_abs" in stats:
    out["mean_abs"] = np.abs(x).mean(axis=1)
  wanted = [s for s in _PERCENTILES if s in stats]
  if wanted:
    values = np.percentile(x, [_PERCENTILES[s] for s in wanted], axis=1)
    out.update(zip(wanted, values))
  unknown = [s for s in stats if s not in out]
  if unknown:
    raise ValueError(f"unknown statistic(s) {unknown}; known: {sorted(STATISTICS)}")
  return np.stack([out[s] for s in stats], axis=1)
