"""A feature matrix keyed by song id: what extraction and table import produce."""

from __future__ import annotations

import collections
import dataclasses
import os
from collections.abc import Iterable, Sequence

import numpy as np

from merjax.errors import MerjaxError


def preview(ids: Sequence, limit: int = 20) -> str:
  """The first ``limit`` items of ``ids`` for an error message, and how many more there are."""
  shown = ", ".join(map(str, ids[:limit]))
  return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def repeated(ids: Iterable[str]) -> list[str]:
  """The ids that occur more than once in ``ids``, sorted."""
  return sorted(i for i, n in collections.Counter(ids).items() if n > 1)


@dataclasses.dataclass(frozen=True, eq=False)
class FeatureSet:
  """Features of a set of songs.

  Attributes:
    song_ids: one id per row [shape=(n,)].
    names: column names [shape=(n_features,)].
    values: the features [shape=(n, n_features)], float32.
    backend: where the features come from (``builtin``, ``essentia`` or ``table``).
  """

  song_ids: np.ndarray
  names: list[str]
  values: np.ndarray
  backend: str

  def __post_init__(self):
    if self.values.shape != (len(self.song_ids), len(self.names)):
      raise MerjaxError(f"feature values have shape {self.values.shape}, expected "
                        f"({len(self.song_ids)}, {len(self.names)})")

  def __len__(self) -> int:
    return len(self.song_ids)

  def select(self, song_ids: Sequence[str]) -> FeatureSet:
    """The rows of ``song_ids``, in that order.

    Raises:
      MerjaxError: listing every requested song without a row.
    """
    row = {str(s): i for i, s in enumerate(self.song_ids)}
    wanted = [str(s) for s in song_ids]
    missing = [s for s in wanted if s not in row]
    if missing:
      raise MerjaxError(f"{len(missing)} song(s) have no {self.backend} feature row: "
                        f"{preview(missing)}")
    index = np.array([row[s] for s in wanted], dtype=np.int64)
    return FeatureSet(np.array(wanted), list(self.names), self.values[index], self.backend)

  def save(self, path: str | os.PathLike) -> None:
    """Writes an ``.npz`` file (atomically: a partial file never replaces a good one)."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}.npz"
    np.savez(tmp, song_ids=np.asarray(self.song_ids, str), names=np.asarray(self.names, str),
             values=self.values, backend=np.asarray(self.backend))
    os.replace(tmp, path)

  @classmethod
  def load(cls, path: str | os.PathLike) -> FeatureSet:
    """Reads a file written by :meth:`save`."""
    try:
      with np.load(path, allow_pickle=False) as data:
        return cls(data["song_ids"], data["names"].tolist(), data["values"],
                   str(data["backend"]))
    except (OSError, KeyError, ValueError) as error:
      raise MerjaxError(f"cannot read features from {os.fspath(path)}: {error}") from None
