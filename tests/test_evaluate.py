"""Paper metrics against sklearn and hand-computed values, and the written report."""

import json

import numpy as np
from sklearn.metrics import f1_score, precision_score, recall_score

from merjax.metrics.classification import classification_metrics, write_report


def test_metrics_match_sklearn_weighted_and_hand_values():
  y_true = [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
  y_pred = [0, 0, 1, 1, 1, 2, 3, 3, 3, 0]
  m = classification_metrics(y_true, y_pred)
  assert m["accuracy"] == 0.6
  for key, fn in (("f1", f1_score), ("precision", precision_score), ("recall", recall_score)):
    assert np.isclose(m[key], fn(y_true, y_pred, average="weighted"))
  # weighted recall equals accuracy; F1 of Q1: p=2/3, r=2/3 -> 2/3 (weight 3/10), etc.
  f1s = [2 / 3, 0.8, 0.5, 0.4]
  assert np.isclose(m["f1"], np.dot(f1s, [0.3, 0.2, 0.3, 0.2]))
  cm = np.array(m["confusion_matrix"])
  np.testing.assert_allclose(cm.sum(axis=1), 100.0)
  np.testing.assert_allclose(cm[2], [0, 0, 100 / 3, 200 / 3], atol=1e-3)


def test_absent_class_row_is_zero_not_nan():
  m = classification_metrics([0, 1, 1], [0, 1, 0])
  cm = np.array(m["confusion_matrix"])
  assert np.all(np.isfinite(cm)) and cm[3].sum() == 0


def test_report_files(tmp_path):
  results = {"cnn": classification_metrics([0, 1, 2, 3], [0, 1, 2, 2]),
             "hybrid": classification_metrics([0, 1, 2, 3], [0, 1, 2, 3])}
  paths = write_report(results, tmp_path / "out", title="Demo")
  loaded = json.loads(paths["json"].read_text())
  assert loaded["hybrid"]["f1"] == 1.0
  text = paths["markdown"].read_text()
  assert "| hybrid | 100.00% |" in text and "**100.0%**" in text
  assert paths["png"].read_bytes()[:4] == b"\x89PNG"
