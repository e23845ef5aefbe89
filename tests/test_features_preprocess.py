"""FeaturePreprocessor: NaN handling, dropped columns, saving, and no leak from other splits."""

import json

import numpy as np
import pytest

from merjax.errors import MerjaxError
from merjax.features import FeaturePreprocessor


def _table(n=40, seed=0):
  rng = np.random.default_rng(seed)
  a, b, c = rng.normal(size=(3, n))
  X = np.stack([a, b, 2.0 * a + 1e-3 * rng.normal(size=n), np.full(n, 3.0), c,
                -b + 0.5 * rng.normal(size=n)], axis=1)
  return X, ["a", "b", "a_twice", "constant", "c", "b_noisy"]


def test_fit_drops_constant_and_correlated_columns_greedily():
  X, names = _table()
  pre = FeaturePreprocessor().fit(X, names)
  assert pre.output_names == ["a", "b", "c", "b_noisy"]
  dropped = pre.report["dropped"]
  assert set(dropped) == {"a_twice", "constant"}
  assert "constant" in dropped["constant"] and "with a" in dropped["a_twice"]
  out = pre.transform(X)
  assert out.shape == (40, 4) and out.dtype == np.float32
  assert np.allclose(out.mean(0), 0, atol=1e-6) and np.allclose(out.std(0), 1, atol=1e-5)
  # A looser threshold also removes the noisy copy of b (|r| about 0.9).
  assert "b_noisy" not in FeaturePreprocessor(correlation_threshold=0.8).fit(
      X, names).output_names
  assert FeaturePreprocessor(correlation_threshold=None).fit(X, names).output_names == \
      ["a", "b", "a_twice", "c", "b_noisy"]


def test_nan_and_inf_become_the_training_median_and_are_reported():
  X, names = _table()
  X[[1, 5], 0] = np.nan
  X[7, 4] = np.inf
  X[:, 1] = np.nan  # no finite value at all: imputed as 0, then constant
  pre = FeaturePreprocessor().fit(X, names)
  assert pre.report["nonfinite"] == {"a": {"nan": 2, "inf": 0}, "b": {"nan": 40, "inf": 0},
                                     "c": {"nan": 0, "inf": 1}}
  assert "b" in pre.report["dropped"]
  out = pre.transform(X)
  assert np.all(np.isfinite(out))
  a = pre.output_names.index("a")
  median_a = np.nanmedian(X[:, 0])
  expected = (median_a - np.nanmean(np.where(np.isnan(X[:, 0]), median_a, X[:, 0]))) / np.std(
      np.where(np.isnan(X[:, 0]), median_a, X[:, 0]))
  assert out[1, a] == pytest.approx(expected, rel=1e-5)
  # NaN at prediction time in a column that had none in training: also the median.
  row = X[:1].copy()
  row[0, 5] = np.nan
  b_noisy = pre.output_names.index("b_noisy")
  assert pre.transform(row)[0, b_noisy] == pytest.approx(
      (np.median(X[:, 5]) - X[:, 5].mean()) / X[:, 5].std(), rel=1e-5)


def test_no_validation_or_test_data_leaks_into_the_statistics():
  X, names = _table(n=60)
  X[3, 2] = np.nan
  splits = np.array(["train"] * 40 + ["validate"] * 10 + ["test"] * 10)
  train = splits == "train"
  fitted = FeaturePreprocessor().fit(X[train], names)

  wild = X.copy()
  rng = np.random.default_rng(1)
  wild[~train] = rng.normal(1e6, 1e6, size=wild[~train].shape)
  wild[~train, 0] = np.nan  # and missing values only outside the training split
  refit = FeaturePreprocessor().fit(wild[train], names)
  assert json.dumps(refit.to_dict()) == json.dumps(fitted.to_dict())
  np.testing.assert_array_equal(refit.transform(wild[train]), fitted.transform(X[train]))
  # Each row is transformed on its own: the other rows of the batch never matter.
  np.testing.assert_array_equal(fitted.transform(wild)[train], fitted.transform(X[train]))
  # The check can fail: fitting on all splits does change the statistics.
  leaky = FeaturePreprocessor().fit(wild, names)
  assert json.dumps(leaky.to_dict()) != json.dumps(fitted.to_dict())


def test_round_trip_through_json():
  X, names = _table()
  X[0, 4] = np.nan
  pre = FeaturePreprocessor(correlation_threshold=0.9).fit(X, names)
  restored = FeaturePreprocessor.from_dict(json.loads(json.dumps(pre.to_dict())))
  assert restored.output_names == pre.output_names and restored.report == pre.report
  assert restored.correlation_threshold == 0.9
  np.testing.assert_array_equal(restored.transform(X), pre.transform(X))


def test_errors():
  X, names = _table()
  with pytest.raises(MerjaxError, match="before fit"):
    FeaturePreprocessor().transform(X)
  with pytest.raises(MerjaxError, match="before it is fitted"):
    FeaturePreprocessor().to_dict()
  pre = FeaturePreprocessor().fit(X, names)
  with pytest.raises(MerjaxError, match="fitted on 6"):
    pre.transform(X[:, :5])
  with pytest.raises(MerjaxError, match="columns"):
    FeaturePreprocessor().fit(X, names[:5])
  with pytest.raises(MerjaxError, match="at least 2"):
    FeaturePreprocessor().fit(X[:1], names)
  with pytest.raises(MerjaxError, match="not a saved"):
    FeaturePreprocessor.from_dict({"format": "something else"})
  with pytest.raises(MerjaxError, match="correlation_threshold"):
    FeaturePreprocessor(correlation_threshold=0.0)
