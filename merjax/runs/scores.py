"""Scores of a trained hybrid on one split, and their report: the tail shared by ``merjax
train``, ``merjax evaluate``, ``merjax tune``, the demo and the experiment runners."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MODELS = ("cnn", "dnn", "hybrid")


def score_split(model, *, mels: np.ndarray, features: np.ndarray, labels: np.ndarray,
                models: Sequence[str] = MODELS) -> dict[str, dict]:
  """Classification metrics of the CNN alone, the DNN alone and the hybrid on one split.

  Args:
    model: a :class:`merjax.inference.artefact.HybridModel`.
    mels: normalised log-mels [shape=(n, n_mels, frames)].
    features: preprocessed features [shape=(n, n_features)].
    labels: quadrant labels [shape=(n,)].
    models: which of ``cnn``, ``dnn`` and ``hybrid`` to score.

  Returns:
    ``{model: metrics}`` (:func:`merjax.metrics.classification.classification_metrics`).
  """
  from merjax.metrics.classification import classification_metrics
  return {which: classification_metrics(labels, model.logits(mels=mels, features=features,
                                                            which=which).argmax(-1))
          for which in models}


def score_and_report(model, *, mels: np.ndarray, features: np.ndarray, labels: np.ndarray,
                     out: str | os.PathLike, title: str,
                     log: Callable[[str], Any] = print) -> dict[str, dict]:
  """Scores the three classifiers on one split, writes the report and logs the table.

  Args:
    model: a :class:`merjax.inference.artefact.HybridModel`.
    mels, features, labels: the split (see :func:`score_split`).
    out: the report's directory (``metrics.json``, ``metrics.md``, ``confusion.png``), written
      by process 0 of a multi-process run.
    title: the report's heading.
    log: progress sink (receives the Markdown table).

  Returns:
    ``{"cnn": metrics, "dnn": metrics, "hybrid": metrics}``.
  """
  from merjax import parallel
  from merjax.metrics.classification import metrics_table, write_report

  results = score_split(model, mels=mels, features=features, labels=labels)
  if parallel.is_primary():
    write_report(results, Path(out), title=title)
  log(metrics_table(results, title=title))
  return results
