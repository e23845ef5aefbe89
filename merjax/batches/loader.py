"""Input pipelines: grain over any random-access source, or a split kept on the accelerator.

All modes shuffle with :func:`epoch_order` and pad alike, so for the same seed they yield the
same examples in the same order:

* :class:`Loader` reads batches with grain (``MapDataset`` -> ``to_iter_dataset`` -> optional
  ``mp_prefetch`` worker processes), from a :class:`merjax.data.store.PreparedDataset` or a dict
  of arrays (precomputed log-mels, features ...), with a transform hook run in the workers.
  Its :class:`Sampler` gives each host a contiguous share of the epoch
  (``grain.sharding.ShardByJaxProcess``); a :class:`GlobalBatchSampler` instead gives each
  process its rows of every *global* batch, which is what training on a multi-host mesh feeds
  (:class:`merjax.batches.split.StreamedBatches`).
* :mod:`merjax.batches.split` keeps a split on the devices, sharded over them, when it fits a
  memory budget, and streams it through a :class:`Loader` otherwise
  (:func:`merjax.batches.split.split_batches`); both yield the same global batches.

Every batch is a dict of arrays with the source's fields plus ``mask`` (float32, 1 for real
examples) and ``index`` (the example's index in the source). Unless ``drop_remainder`` is set,
the last batch is padded to full size with ``mask == 0``, so every example counts exactly once
and one compiled step serves the whole epoch. Epoch ``e`` shuffles with the permutation seeded by
``(seed, e)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from merjax.audio.io import from_pcm16
from merjax.errors import MerjaxError

Batch = dict[str, Any]


def pcm_to_float(batch: Batch) -> Batch:
  """Transform: the stores' int16 ``waveform`` to float32 in [-1, 1) (``x / 32768``)."""
  return {**batch, "waveform": from_pcm16(batch["waveform"])}


class ArraySource:
  """A dict of equally long arrays as a random-access source (rows are examples).

  Args:
    arrays: ``{"inputs": [shape=(n, ...)], "label": [shape=(n,)], ...}``.
  """

  def __init__(self, arrays: Mapping[str, np.ndarray]):
    sizes = {key: len(value) for key, value in arrays.items()}
    if not sizes or len(set(sizes.values())) != 1:
      raise MerjaxError(f"need one or more arrays of the same length, got lengths {sizes}")
    self.arrays = {key: np.asarray(value) for key, value in arrays.items()}
    self._size = next(iter(sizes.values()))

  def __len__(self) -> int:
    return self._size

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    return {key: value[index] for key, value in self.arrays.items()}

  def __getitems__(self, indices: Sequence[int]) -> list[dict[str, np.ndarray]]:
    return [self[i] for i in indices]

  def gather(self, indices: Sequence[int]) -> dict[str, np.ndarray]:
    return {key: value[np.asarray(indices)] for key, value in self.arrays.items()}


def as_source(data):
  """A dict of arrays becomes an :class:`ArraySource`; anything with len/getitem is kept."""
  if isinstance(data, Mapping):
    return ArraySource(data)
  if not (hasattr(data, "__len__") and hasattr(data, "__getitem__")):
    raise MerjaxError(f"a source needs __len__ and __getitem__, got {type(data).__name__}")
  return data


def gather(source, indices: np.ndarray) -> Batch:
  """Rows ``indices`` of a source as stacked arrays (batched reads where the source has them)."""
  if hasattr(source, "gather"):
    return dict(source.gather(indices))
  records = (source.__getitems__(list(indices)) if hasattr(source, "__getitems__")
             else [source[int(i)] for i in indices])
  return {key: np.stack([np.asarray(r[key]) for r in records]) for key in records[0]}


def _no_sharding():
  from grain.sharding import NoSharding
  return NoSharding()


def _by_jax_process():
  from grain.sharding import ShardByJaxProcess
  return ShardByJaxProcess()


def epoch_order(size: int, *, shuffle: bool, seed: int, epoch: int) -> np.ndarray:
  """The example order of one epoch, a pure function of ``(seed, epoch)`` (exact resume).

  Args:
    size: number of examples.
    shuffle: permute (training) or keep ``range(size)`` (evaluation).
    seed: non-negative shuffling seed.
    epoch: epoch index; epoch ``e`` permutes with ``np.random.default_rng([seed, e])``.

  Returns:
    [shape=(size,)] int64 example indices.
  """
  if not shuffle:
    return np.arange(size)
  return np.random.default_rng([seed, epoch]).permutation(size)


def batch_index_table(n: int, batch_size: int, *, order: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
  """Index rows and masks covering ``n`` examples once, padded to whole batches.

  Args:
    n: number of examples.
    batch_size: examples per batch.
    order: optional permutation of ``range(n)``.

  Returns:
    ``(indices, mask)``, both [shape=(ceil(n / batch_size), batch_size)]; padded slots repeat
    the order's first example, with mask 0.
  """
  if n <= 0:
    raise MerjaxError(f"cannot batch an empty split (n={n})")
  if batch_size <= 0:
    raise MerjaxError(f"batch_size must be positive, got {batch_size}")
  order = np.arange(n) if order is None else np.asarray(order)
  n_batches = -(-n // batch_size)
  indices = np.full(n_batches * batch_size, order[0], np.int32)
  mask = np.zeros(n_batches * batch_size, np.float32)
  indices[:n], mask[:n] = order, 1.0
  return indices.reshape(n_batches, batch_size), mask.reshape(n_batches, batch_size)


@dataclasses.dataclass(frozen=True)
class GlobalBatchSampler:
  """This process's rows of every *global* batch: the multi-host form of one global order.

  Every process computes the same global order and padding (:func:`batch_index_table` of
  :func:`epoch_order`) and keeps only columns ``rows`` of each global batch, so the global
  batches that ``jax.make_array_from_process_local_data`` assembles from all processes are
  exactly those of a one-process run, and each process reads only its own examples.

  Args:
    num_examples: size of the set being batched.
    batch_size: examples per global batch.
    rows: this process's slice of each global batch
      (:func:`merjax.parallel.process_rows`); default all of them.
    seed: shuffling seed (epoch ``e`` uses ``np.random.default_rng([seed, e])``).
    shuffle: shuffle every epoch (training) or keep the order (evaluation).
  """

  num_examples: int
  batch_size: int
  rows: slice = dataclasses.field(default_factory=lambda: slice(None))
  seed: int = 0
  shuffle: bool = True

  def __post_init__(self):
    if self.seed < 0:
      raise MerjaxError(f"seed must be non-negative, got {self.seed}")
    batch_index_table(self.num_examples, self.batch_size)  # validates both sizes

  def __len__(self) -> int:
    return -(-self.num_examples // self.batch_size)

  def epoch(self, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(positions, mask)``, both [shape=(len(self), rows of this process)]."""
    order = epoch_order(self.num_examples, shuffle=self.shuffle, seed=self.seed, epoch=epoch)
    positions, mask = batch_index_table(self.num_examples, self.batch_size, order=order)
    return positions[:, self.rows], mask[:, self.rows]


@dataclasses.dataclass(frozen=True)
class Sampler:
  """Which examples make up every batch: per-epoch shuffling, host sharding and padding.

  Args:
    num_examples: size of the set being batched.
    batch_size: examples per batch on this host.
    seed: epoch ``e`` uses the permutation of ``np.random.default_rng([seed, e])``.
    shuffle: shuffle every epoch (training) or keep the order (evaluation).
    drop_remainder: drop the last partial batch (and, across hosts, the examples that do not
      split evenly) instead of padding it with ``mask == 0``.
    shard_options: this host's share, e.g. ``grain.sharding.ShardByJaxProcess()``; the
      permutation is global, so hosts see disjoint examples in every epoch.
  """

  num_examples: int
  batch_size: int
  seed: int = 0
  shuffle: bool = True
  drop_remainder: bool = False
  shard_options: Any = dataclasses.field(default_factory=_no_sharding)

  def __post_init__(self):
    if self.num_examples <= 0:
      raise MerjaxError(f"cannot batch an empty set (num_examples={self.num_examples})")
    if self.batch_size <= 0:
      raise MerjaxError(f"batch_size must be positive, got {self.batch_size}")
    if self.seed < 0:
      raise MerjaxError(f"seed must be non-negative, got {self.seed}")
    if self.drop_remainder and len(self) == 0:
      raise MerjaxError(f"{self.num_examples} examples make no full batch of {self.batch_size} "
                        f"per host; lower the batch size or keep the remainder")

  def __len__(self) -> int:
    """Batches per epoch, the same on every host."""
    per_host = -(-self.num_examples // self.shard_options.shard_count)
    if self.drop_remainder:
      return (self.num_examples // self.shard_options.shard_count) // self.batch_size
    return -(-per_host // self.batch_size)

  def _host_range(self) -> tuple[int, int]:
    # grain's even split: contiguous ranges, the first n % count hosts one longer (or all
    # n // count long when dropping the remainder).
    index, count = self.shard_options.shard_index, self.shard_options.shard_count
    size, extra = divmod(self.num_examples, count)
    if self.drop_remainder:
      return index * size, (index + 1) * size
    return index * size + min(index, extra), (index + 1) * size + min(index + 1, extra)

  def order(self, epoch: int) -> np.ndarray:
    """The global order of epoch ``epoch`` [shape=(num_examples,)]."""
    return epoch_order(self.num_examples, shuffle=self.shuffle, seed=self.seed, epoch=epoch)

  def epoch(self, epoch: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """This host's batches of one epoch.

    Returns:
      ``(positions, mask)``, both [shape=(len(self), batch_size)]: positions in ``0..n-1``
      (padding repeats the epoch's first example) and float32 1/0 masks.
    """
    order = self.order(epoch)
    start, end = self._host_range()
    mine = order[start:end]
    slots = len(self) * self.batch_size
    positions = np.full(slots, order[0], dtype=np.int64)
    mask = np.zeros(slots, dtype=np.float32)
    used = min(slots, len(mine))
    positions[:used], mask[:used] = mine[:used], 1.0
    return positions.reshape(-1, self.batch_size), mask.reshape(-1, self.batch_size)


def _mark_flags_parsed() -> None:
  # grain 0.2.18's mp_prefetch reads absl flags; a script that never parsed them would raise
  # UnparsedFlagAccessError.
  from absl import flags
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()


class _BatchFn:
  """Global batch number -> batch dict (runs in grain's threads and worker processes)."""

  def __init__(self, source, indices: np.ndarray, sampler: Sampler,
               transform: Callable[[Batch], Batch] | None, positions: bool = False):
    self.source, self.indices, self.sampler, self.transform = source, indices, sampler, transform
    self.positions = positions
    self._table: tuple[int, np.ndarray, np.ndarray] | None = None

  def __getstate__(self):
    return {**self.__dict__, "_table": None}

  def __call__(self, number: int) -> Batch:
    epoch, row = divmod(int(number), len(self.sampler))
    table = self._table  # one permutation per epoch, not per batch
    if table is None or table[0] != epoch:
      table = self._table = (epoch, *self.sampler.epoch(epoch))
    _, positions, mask = table
    ids = self.indices[positions[row]]
    batch = gather(self.source, ids)
    batch["mask"] = mask[row].copy()
    batch["index"] = positions[row].copy() if self.positions else ids
    return self.transform(batch) if self.transform is not None else batch


class Loader:
  """Batches of a source read with grain: seeded per-epoch shuffling, host sharding, prefetching.

  Args:
    source: a random-access source (``len`` and ``[i]``; e.g. a
      :class:`~merjax.data.store.PreparedDataset`) or a dict of arrays.
    batch_size: examples per batch on this host.
    indices: which of the source's examples to use (e.g. ``ds.indices("train")``); all by default.
    seed: shuffling seed (see :class:`Sampler`).
    shuffle: shuffle every epoch; ``False`` with ``drop_remainder=False`` is evaluation order.
    drop_remainder: drop the last partial batch instead of padding it with ``mask == 0``.
    transform: ``batch -> batch`` applied to every batch, in the workers when there are any
      (must then be picklable), e.g. :func:`pcm_to_float`.
    shard_options: this host's share (default ``grain.sharding.ShardByJaxProcess()``: with
      several JAX processes each reads its part; with one, everything).
    num_epochs: how many epochs :meth:`epoch` may reach (default: unbounded).
    worker_count: grain ``mp_prefetch`` worker processes (0 reads in this process's threads).
    worker_buffer_size: batches each worker prepares ahead.
    read_threads: threads reading batches ahead in each process.
    index: what a batch's ``index`` holds: ``"source"`` (the example's index in the source)
      or ``"position"`` (its number among ``indices``).
    sampler: replaces the batching given by ``batch_size``, ``seed``, ``shuffle``,
      ``drop_remainder`` and ``shard_options`` (e.g. a :class:`GlobalBatchSampler`); anything
      with ``len`` (batches per epoch) and ``epoch(e) -> (positions, mask)`` over
      ``range(len(indices))``.
  """

  def __init__(self, source, *, batch_size: int = 0,
               indices: Sequence[int] | np.ndarray | None = None,
               seed: int = 0, shuffle: bool = True, drop_remainder: bool = False,
               transform: Callable[[Batch], Batch] | None = None, shard_options=None,
               num_epochs: int | None = None, worker_count: int = 0, worker_buffer_size: int = 2,
               read_threads: int = 4, sampler=None, index: str = "source"):
    self.source = as_source(source)
    self.indices = (np.arange(len(self.source)) if indices is None
                    else np.asarray(indices, dtype=np.int64))
    self.sampler = sampler or Sampler(len(self.indices), batch_size, seed=seed, shuffle=shuffle,
                                      drop_remainder=drop_remainder,
                                      shard_options=shard_options or _by_jax_process())
    if index not in ("source", "position"):
      raise MerjaxError(f"index must be 'source' or 'position', got {index!r}")
    self.transform, self.index = transform, index
    self.num_epochs = num_epochs
    self.worker_count, self.worker_buffer_size = worker_count, worker_buffer_size
    self.read_threads = read_threads
    self._iterator: Iterator[Batch] | None = None
    self._next = -1

  def __len__(self) -> int:
    """Batches per epoch."""
    return len(self.sampler)

  def dataset(self, start_epoch: int = 0):
    """The grain ``IterDataset`` of all batches from ``start_epoch`` on, epoch after epoch."""
    import grain

    per_epoch = len(self)
    stop_epoch = self.num_epochs if self.num_epochs is not None else start_epoch + 10**9
    ds = grain.MapDataset.range(start_epoch * per_epoch, stop_epoch * per_epoch)
    ds = ds.map(_BatchFn(self.source, self.indices, self.sampler, self.transform,
                         positions=self.index == "position"))
    ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=self.read_threads,
                                              prefetch_buffer_size=2 * self.read_threads))
    if self.worker_count > 0:
      _mark_flags_parsed()
      ds = ds.mp_prefetch(grain.MultiprocessingOptions(
          num_workers=self.worker_count, per_worker_buffer_size=self.worker_buffer_size))
    return ds

  def epoch(self, epoch: int = 0) -> Iterator[Batch]:
    """The batches of one epoch; consecutive epochs keep the same grain workers running."""
    if self.num_epochs is not None and not 0 <= epoch < self.num_epochs:
      raise MerjaxError(f"epoch {epoch} is outside this loader's {self.num_epochs} epochs")
    per_epoch = len(self)
    if self._iterator is None or self._next != epoch * per_epoch:
      self.close()
      self._iterator, self._next = iter(self.dataset(epoch)), epoch * per_epoch
    iterator = self._iterator
    for _ in range(per_epoch):
      batch = next(iterator)
      self._next += 1
      yield batch

  def __iter__(self) -> Iterator[Batch]:
    return self.epoch(0)

  def close(self) -> None:
    """Stops the worker processes (also done when the loader is garbage collected)."""
    if self._iterator is not None and hasattr(self._iterator, "close"):
      self._iterator.close()
    self._iterator, self._next = None, -1

  def __del__(self):
    try:
      self.close()
    except Exception:  # pylint: disable=broad-except  # interpreter shutdown
      pass
