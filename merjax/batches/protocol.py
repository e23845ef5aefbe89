"""The one protocol every stage input implements, resident, streamed or augmented."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import jax


@runtime_checkable
class Batches(Protocol):
  """A split's batches: ``len()`` batches per epoch, and epoch ``e``'s global batches.

  Each batch is a dict of global ``jax.Array`` sharded along the mesh's ``data`` axis, with the
  split's fields (``inputs``, ``label`` ...) plus ``mask`` (1 for real examples, 0 for the last
  batch's padding) and ``index`` (each row's example number). Implemented by
  :class:`merjax.batches.split.DeviceBatches`, :class:`merjax.batches.split.StreamedBatches`,
  :class:`merjax.batches.augmented.OnlineAugmentedBatches` and
  :class:`merjax.batches.augmented.WaveformBatches`.
  """

  def __len__(self) -> int: ...

  def epoch(self, epoch: int = 0) -> Iterator[dict[str, jax.Array]]: ...
