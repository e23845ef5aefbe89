"""Test-split metrics as the paper reports them, and their Markdown / JSON / PNG renderings.

Weighted F1, precision and recall (sklearn ``average="weighted"``), accuracy, and the
confusion matrix normalised per true quadrant (rows sum to 100 %), as in Tables 3-7 of
Louro et al. (2024).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from merjax.config import QUADRANTS


def classification_metrics(y_true: ArrayLike, y_pred: ArrayLike, *,
                           n_classes: int = 4) -> dict:
  """Paper metrics for integer labels.

  Args:
    y_true: true quadrant indices (0 = Q1 ... 3 = Q4) [shape=(n,)].
    y_pred: predicted quadrant indices [shape=(n,)].
    n_classes: number of classes (rows/columns of the confusion matrix).

  Returns:
    ``{"f1", "precision", "recall", "accuracy"}`` as fractions in [0, 1],
    ``"confusion_matrix"`` in percent of each true quadrant (a row with no examples is all
    zeros), ``"counts"`` (raw confusion counts) and ``"n"``.
  """
  from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
  )

  true, pred = np.asarray(y_true), np.asarray(y_pred)
  if true.shape != pred.shape or true.ndim != 1:
    raise ValueError(f"y_true and y_pred must be 1-D of equal length, got {true.shape} and "
                     f"{pred.shape}")
  if len(true) == 0:
    raise ValueError("cannot compute metrics on an empty split")
  labels = list(range(n_classes))
  kwargs = dict(labels=labels, average="weighted", zero_division=0)
  counts = confusion_matrix(true, pred, labels=labels)
  totals = counts.sum(axis=1, keepdims=True)
  percent = np.divide(100.0 * counts, totals, out=np.zeros(counts.shape), where=totals > 0)
  return {
      "f1": float(f1_score(true, pred, **kwargs)),
      "precision": float(precision_score(true, pred, **kwargs)),
      "recall": float(recall_score(true, pred, **kwargs)),
      "accuracy": float(accuracy_score(true, pred)),
      "confusion_matrix": percent.round(4).tolist(),
      "counts": counts.tolist(),
      "n": int(len(true)),
  }


def metrics_table(results: Mapping[str, dict], *, title: str = "Test split") -> str:
  """A Markdown table like the paper's Table 3, one row per model."""
  lines = [f"| {title} | F1-score | Precision | Recall | Accuracy |", "|---|---|---|---|---|"]
  for name, m in results.items():
    lines.append(f"| {name} | {100 * m['f1']:.2f}% | {100 * m['precision']:.2f}% | "
                 f"{100 * m['recall']:.2f}% | {100 * m['accuracy']:.2f}% |")
  return "\n".join(lines)


def confusion_table(metrics: dict, *, title: str) -> str:
  """A Markdown confusion matrix laid out like the paper's Tables 4-7 (bold diagonal)."""
  matrix = metrics["confusion_matrix"]
  lines = [f"**{title}** (rows: actual, columns: predicted, % of each actual quadrant)", "",
           "| Actual \\ Predicted | " + " | ".join(QUADRANTS) + " |",
           "|---|" + "---|" * len(QUADRANTS)]
  for i, row in enumerate(matrix):
    cells = [f"**{v:.1f}%**" if i == j else f"{v:.1f}%" for j, v in enumerate(row)]
    lines.append(f"| {QUADRANTS[i]} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def plot_confusion(metrics_by_model: Mapping[str, dict], path: str | Path) -> Path:
  """Writes one heat map per model, side by side, to a PNG."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  names = list(metrics_by_model)
  fig, axes = plt.subplots(1, len(names), figsize=(4.2 * len(names), 4), squeeze=False)
  for ax, name in zip(axes[0], names):
    matrix = np.asarray(metrics_by_model[name]["confusion_matrix"])
    ax.imshow(matrix, vmin=0, vmax=100, cmap="Blues")
    for i in range(matrix.shape[0]):
      for j in range(matrix.shape[1]):
        ax.text(j, i, f"{matrix[i, j]:.1f}%", ha="center", va="center",
                color="white" if matrix[i, j] > 55 else "black", fontsize=9)
    ax.set_xticks(range(len(QUADRANTS)), QUADRANTS)
    ax.set_yticks(range(len(QUADRANTS)), QUADRANTS)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("Actual")
    ax.set_title(f"{name}  (F1 {100 * metrics_by_model[name]['f1']:.1f}%)")
  fig.tight_layout()
  path = Path(path)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def write_report(results: Mapping[str, dict], out_dir: str | Path, *, title: str = "Test split"
                 ) -> dict[str, Path]:
  """Writes ``metrics.json``, ``metrics.md`` and ``confusion.png`` for several models.

  Args:
    results: model name -> :func:`classification_metrics` output.
    out_dir: an existing or new directory.
    title: heading of the Markdown tables.

  Returns:
    The written paths by kind (``json``, ``markdown``, ``png``).
  """
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = {"json": out_dir / "metrics.json", "markdown": out_dir / "metrics.md",
           "png": out_dir / "confusion.png"}
  paths["json"].write_text(json.dumps(results, indent=2) + "\n")
  sections = [f"# {title}", "", metrics_table(results, title=title), ""]
  for name, metrics in results.items():
    sections += [confusion_table(metrics, title=f"Confusion matrix: {name}"), ""]
  paths["markdown"].write_text("\n".join(sections))
  plot_confusion(results, paths["png"])
  return paths
