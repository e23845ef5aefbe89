"""Stratified train/validate/test splits (the 70-15-15 TVT protocol of MERGE).

MERGE names its splits ``train``, ``validate`` and ``test``; the arrays returned here use the
same names so that they compare directly with the released ``tvt_dataframes``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from merjax.config import QUADRANTS, SPLITS
from merjax.errors import MerjaxError


def _class_name(label) -> str:
  if isinstance(label, (int, np.integer)) and 0 <= int(label) < len(QUADRANTS):
    return f"{int(label)} ({QUADRANTS[int(label)]})"
  return repr(label.item() if isinstance(label, np.generic) else label)


def _split_counts(n: int, fractions: np.ndarray) -> np.ndarray:
  """Largest-remainder apportionment of ``n`` items, at least one per non-zero fraction."""
  exact = n * fractions
  counts = np.floor(exact).astype(np.int64)
  # Ties go to the earlier split (train, then validate), so the result is deterministic.
  order = np.argsort(-(exact - counts), kind="stable")
  counts[order[:n - counts.sum()]] += 1
  for i in np.flatnonzero((fractions > 0) & (counts == 0)):
    counts[np.argmax(counts)] -= 1
    counts[i] = 1
  return counts


def stratified_split(labels: Sequence | np.ndarray, *,
                     fractions: ArrayLike = (0.7, 0.15, 0.15), seed: int) -> np.ndarray:
  """Assigns every example to ``train``, ``validate`` or ``test``, class by class.

  Each class is shuffled with its own draw of one seeded generator and cut in proportion to
  ``fractions`` (largest-remainder rounding), so every split has the class balance of the whole
  set. The result depends only on ``labels``, ``fractions`` and ``seed``.

  Args:
    labels: class of every example [shape=(n,)], e.g. quadrant indices 0..3 or ``"Q1"``..``"Q4"``.
    fractions: shares of train, validate and test; non-negative, summing to 1.
    seed: seed of the shuffle.

  Returns:
    Split names [shape=(n,)], dtype ``<U8``: ``"train"``, ``"validate"`` or ``"test"``.

  Raises:
    MerjaxError: if ``fractions`` is malformed, or a class has fewer examples than there are
      splits with a non-zero fraction.
  """
  labels = np.asarray(labels)
  if labels.ndim != 1:
    raise MerjaxError(f"labels must be one-dimensional, got shape {labels.shape}")
  shares = np.asarray(fractions, dtype=np.float64)
  if (shares.shape != (len(SPLITS),) or not np.all(np.isfinite(shares))
      or np.any(shares < 0) or not np.isclose(shares.sum(), 1.0) or shares[0] <= 0):
    raise MerjaxError(
        f"fractions must be three non-negative shares (train, validate, test) summing to 1 with "
        f"a non-zero train share, got {tuple(shares.tolist())}")
  needed = int(np.count_nonzero(shares))
  classes, counts = np.unique(labels, return_counts=True)
  for label, count in zip(classes, counts):
    if count < needed:
      pct = "-".join(f"{100 * f:g}" for f in shares)
      raise MerjaxError(
          f"class {_class_name(label)} has {count} example(s); a {pct} split needs at least "
          f"{needed} per class to populate every split")

  rng = np.random.default_rng(seed)
  out = np.empty(labels.shape, dtype="<U8")
  for label in classes:
    members = rng.permutation(np.flatnonzero(labels == label))
    bounds = np.cumsum(_split_counts(len(members), shares))[:-1]
    for name, part in zip(SPLITS, np.split(members, bounds)):
      out[part] = name
  return out
