"""Feature preprocessing fitted on the training split only, saved with the model.

The paper's DNN branch reads a decorrelated feature table (Louro et al. 2024, Section 3.2);
here the same clean-up is a fitted transform, so prediction applies exactly what training saw:

1. NaN and inf become the column's training median (the columns that had them are reported);
2. columns constant over the training split are dropped;
3. of every pair of columns with ``|r| > threshold`` on the training split, the later one is
   dropped (greedy in column order, so the result is deterministic);
4. the kept columns are standardised with the training mean and standard deviation.

Nothing of the validation or test split enters any statistic: :meth:`FeaturePreprocessor.fit`
only ever sees the rows it is given.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from merjax.errors import MerjaxError

_FORMAT = "merjax.FeaturePreprocessor/1"


@dataclasses.dataclass(frozen=True)
class _Fitted:
  """What :meth:`FeaturePreprocessor.fit` learns (``n_in`` input, ``n_out`` kept columns).

  Attributes:
    input_names: [shape=(n_in,)].
    median: the training median of every input column [shape=(n_in,)] float64.
    keep: the kept input columns, in output order [shape=(n_out,)] int64.
    mean: the training mean of the kept columns [shape=(n_out,)] float64.
    std: their training standard deviation [shape=(n_out,)] float64.
  """
  input_names: list[str]
  median: np.ndarray
  keep: np.ndarray
  mean: np.ndarray
  std: np.ndarray


class FeaturePreprocessor:
  """Median imputation, constant and correlated column removal, and standardisation.

  Args:
    correlation_threshold: drop one column of every pair whose absolute Pearson correlation on
      the training split exceeds this (``None`` or >= 1 keeps correlated columns).

  Attributes (after :meth:`fit`):
    input_names: the names of the columns :meth:`transform` expects.
    output_names: the names of the kept columns, in output order.
    report: ``{"nonfinite": {name: {"nan": n, "inf": n}}, "dropped": {name: reason}, ...}``.
  """

  def __init__(self, *, correlation_threshold: float | None = 0.95):
    if correlation_threshold is not None and not 0.0 < correlation_threshold:
      raise MerjaxError(
          f"correlation_threshold must be positive (or None), got {correlation_threshold}")
    self.correlation_threshold = correlation_threshold
    self.report: dict[str, Any] | None = None
    self._fit: _Fitted | None = None

  @property
  def fitted(self) -> bool:
    return self._fit is not None

  def _fitted(self, error: str) -> _Fitted:
    """The fitted statistics, or a :class:`MerjaxError` saying ``error`` before :meth:`fit`."""
    if self._fit is None:
      raise MerjaxError(error)
    return self._fit

  @property
  def input_names(self) -> list[str]:
    return list(self._fitted("FeaturePreprocessor.input_names read before fit").input_names)

  @property
  def output_names(self) -> list[str]:
    fit = self._fitted("FeaturePreprocessor.output_names read before fit")
    return [fit.input_names[j] for j in fit.keep]

  def _check(self, X: np.ndarray, n_columns: int | None = None) -> np.ndarray:
    X = np.asarray(X, np.float64)
    if X.ndim != 2:
      raise MerjaxError(f"features must be a [examples, features] matrix, got shape {X.shape}")
    if n_columns is not None and X.shape[1] != n_columns:
      raise MerjaxError(
          f"features have {X.shape[1]} columns but the preprocessor was fitted on {n_columns}")
    return X

  def fit(self, X: np.ndarray, names: Sequence[str]) -> FeaturePreprocessor:
    """Fits every statistic on ``X``, which must hold the training split only.

    Args:
      X: training features [shape=(n_train, n_features)].
      names: the column names [shape=(n_features,)].

    Returns:
      ``self``.
    """
    names = [str(n) for n in names]
    X = self._check(X, len(names))
    if X.shape[0] < 2:
      raise MerjaxError(f"need at least 2 training examples to fit the preprocessing, "
                        f"got {X.shape[0]}")
    finite = np.isfinite(X)
    nonfinite = {}
    for j in np.flatnonzero(~finite.all(axis=0)):
      nonfinite[names[j]] = {"nan": int(np.isnan(X[:, j]).sum()),
                             "inf": int(np.isinf(X[:, j]).sum())}
    with warnings.catch_warnings():
      warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns are handled below
      median = np.nanmedian(np.where(finite, X, np.nan), axis=0)
    median = np.where(np.isfinite(median), median, 0.0)  # no finite value at all: constant 0
    X = np.where(finite, X, median)

    dropped: dict[str, str] = {}
    mean, std = X.mean(axis=0), X.std(axis=0)
    # Exactly constant, or varying only at float32 rounding level.
    constant = (np.ptp(X, axis=0) == 0) | (std <= 1e-7 * np.abs(mean))
    for j in np.flatnonzero(constant):
      dropped[names[j]] = "constant on the training split"
    candidates = np.flatnonzero(~constant)

    keep = candidates
    threshold = self.correlation_threshold
    if threshold is not None and threshold < 1.0 and len(candidates) > 1:
      z = ((X[:, candidates] - mean[candidates]) / std[candidates]).astype(np.float32)
      corr = np.abs(z.T @ z) / X.shape[0]  # float32: thousands of columns stay quick
      kept = np.zeros(len(candidates), bool)
      for i in range(len(candidates)):
        earlier = np.flatnonzero(kept[:i])
        if len(earlier):
          k = earlier[np.argmax(corr[i, earlier])]
          if corr[i, k] > threshold:
            dropped[names[candidates[i]]] = (
                f"|r| = {corr[i, k]:.3f} > {threshold:g} with {names[candidates[k]]}")
            continue
        kept[i] = True
      keep = candidates[kept]

    self._fit = _Fitted(input_names=names, median=median, keep=keep, mean=mean[keep],
                        std=std[keep])
    self.report = {"n_input": len(names), "n_output": len(keep), "n_train": int(X.shape[0]),
                   "correlation_threshold": threshold, "nonfinite": nonfinite,
                   "dropped": dropped}
    return self

  def transform(self, X: np.ndarray) -> np.ndarray:
    """Applies the fitted transform.

    Args:
      X: features of any split [shape=(n, n_features)] with the fitted columns.

    Returns:
      [shape=(n, len(output_names))] float32.
    """
    fit = self._fitted("FeaturePreprocessor.transform called before fit")
    X = self._check(X, len(fit.input_names))
    X = np.where(np.isfinite(X), X, fit.median)[:, fit.keep]
    return ((X - fit.mean) / fit.std).astype(np.float32)

  def fit_transform(self, X: np.ndarray, names: Sequence[str]) -> np.ndarray:
    return self.fit(X, names).transform(X)

  def to_dict(self) -> dict[str, Any]:
    """A JSON-serialisable description (for the model directory)."""
    fit = self._fitted("cannot save a FeaturePreprocessor before it is fitted")
    return {"format": _FORMAT, "correlation_threshold": self.correlation_threshold,
            "input_names": list(fit.input_names), "median": fit.median.tolist(),
            "keep": fit.keep.tolist(), "mean": fit.mean.tolist(),
            "std": fit.std.tolist(), "report": self.report}

  @classmethod
  def from_dict(cls, data: dict[str, Any]) -> FeaturePreprocessor:
    """Inverse of :meth:`to_dict`."""
    if data.get("format") != _FORMAT:
      raise MerjaxError(f"not a saved FeaturePreprocessor (format {data.get('format')!r}, "
                        f"expected {_FORMAT!r})")
    self = cls(correlation_threshold=data["correlation_threshold"])
    self._fit = _Fitted(input_names=[str(n) for n in data["input_names"]],
                        median=np.asarray(data["median"], np.float64),
                        keep=np.asarray(data["keep"], np.int64),
                        mean=np.asarray(data["mean"], np.float64),
                        std=np.asarray(data["std"], np.float64))
    self.report = data.get("report")
    return self
