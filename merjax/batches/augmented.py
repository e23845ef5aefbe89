"""The CNN branch's augmented training set, offline (the paper) or online (fresh per epoch).

Both modes apply each of ``config.augment.transforms`` to every training clip on its own, so
the CNN trains on the originals plus one variant per transform (x5 with the paper's four).
Offline draws the parameters once from ``config.augment.seed``: the same seed gives the same
set. Online draws fresh parameters every epoch. Variant ``v`` of clip ``i`` draws from
``fold_in(fold_in(base, i), TRANSFORMS.index(transform))`` with ``base = key(seed)`` offline and
``fold_in(key(seed), epoch)`` online, so a variant depends only on (seed, [epoch,] clip,
variant): not on the batch, the device count or the host it was computed on.

Two pipelines produce these inputs (``config.augment.pipeline``):

- ``precomputed``: the augmented log-mels are computed before training (offline: once, held in
  memory, x5 the training split's mels; online: at the start of every epoch) and batched like
  any split (:func:`offline_training_set`, :class:`OnlineAugmentedBatches`).
- ``waveforms``: nothing is precomputed. The batches carry the training clips themselves, sharded
  along the mesh's ``data`` axis (:class:`WaveformBatches`), and the CNN's jitted training step
  augments each example with its own key, computes the log-mel and the training split's
  z-normalisation, and trains (:class:`WaveformFrontEnd`, the state's ``apply_fn``): every
  device works on its own rows, and the memory is that of the clips, not of five mel sets.
- ``auto`` (default): ``waveforms`` on GPUs and TPUs, ``precomputed`` on CPU. The rule: on CPU
  the augmentation (phase vocoder, resampling) costs more than the CNN step, and the waveform
  step computes every transform for every example (a per-example choice under ``vmap`` is a
  select: all branches run) and redoes it every epoch, while the precomputed set is computed
  once (offline) with one transform per variant. Measured on the shared 2-core CPU (load 8-12,
  32 clips of 30 s, x5, batch 32, ``benchmarks/accelerator.py --only-fit --fit-clips 32``):
  49-50 s per epoch from waveforms vs 28-32 s precomputed, plus 11-14 s once to precompute.
  Both pipelines give the same log-mels (to 1e-4 dB) and the same training steps
  (tests/test_waveform_training.py).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from merjax import parallel
from merjax.config import AudioConfig, AugmentConfig
from merjax.errors import MerjaxError

_CHUNK = 8  # clips per jitted augment-then-mel call: bounds the phase vocoder's memory


def _mel_kwargs(audio: AudioConfig, augment: AugmentConfig) -> dict:
  return dict(sample_rate=audio.sample_rate, n_fft=audio.n_fft, hop_length=audio.hop_length,
              n_mels=audio.n_mels, fmin=audio.fmin, fmax=audio.fmax, ref=audio.ref,
              amin=audio.amin, top_db=audio.top_db, max_shift_seconds=augment.max_shift_seconds,
              max_semitones=augment.max_semitones, min_rate=augment.min_rate,
              max_rate=augment.max_rate, max_gain_db=augment.max_gain_db,
              resampler=augment.resampler)


def augmented_log_mels(waveforms, *, audio: AudioConfig, augment: AugmentConfig,
                       key: jax.Array, mel_mean: float, mel_std: float,
                       progress: bool = False) -> jax.Array:
  """Normalised log-mels of every clip under each transform, on the device.

  Args:
    waveforms: training clips [shape=(n, samples)] (numpy or device array).
    audio: spectral settings.
    augment: the transforms and their ranges.
    key: base key; clip ``i`` uses ``fold_in(key, i)``.
    mel_mean, mel_std: the training split's log-mel statistics.
    progress: show a progress bar.

  Returns:
    [shape=(n * len(transforms), n_mels, frames)], transform-major: the first ``n`` rows are
    the first transform's variants of clips ``0..n-1``.
  """
  from tqdm.auto import tqdm

  from merjax.audio import augment_log_mel

  n = len(waveforms)
  transforms = tuple(augment.transforms)
  fold = jax.vmap(jax.random.fold_in, in_axes=(None, 0))
  kwargs = _mel_kwargs(audio, augment)
  per_transform: dict[str, list[np.ndarray]] = {name: [] for name in transforms}
  for start in tqdm(range(0, n, _CHUNK), desc="augment + log-mel", disable=not progress,
                    unit="batch"):
    stop = min(start + _CHUNK, n)
    chunk = jnp.asarray(waveforms[start:stop], jnp.float32)
    chunk_keys = fold(key, jnp.arange(start, start + _CHUNK))
    pad = _CHUNK - (stop - start)
    if pad:  # one compiled shape for every chunk
      chunk = jnp.concatenate([chunk, jnp.zeros((pad, chunk.shape[1]), chunk.dtype)])
    mels, _ = augment_log_mel(chunk_keys, chunk, transforms=transforms, include_original=False,
                              **kwargs)
    for name in transforms:
      per_transform[name].append(mels[name][:stop - start])
  stacked = jnp.concatenate([jnp.concatenate(per_transform[name]) for name in transforms])
  return (stacked - mel_mean) / mel_std


def offline_training_set(waveforms: np.ndarray, labels: np.ndarray, train_mels: np.ndarray, *,
                         audio: AudioConfig, augment: AugmentConfig, mel_mean: float,
                         mel_std: float) -> tuple[np.ndarray, np.ndarray]:
  """The paper's five-fold CNN training set: originals plus one variant per transform.

  Args:
    waveforms: training clips [shape=(n, samples)].
    labels: their quadrants [shape=(n,)].
    train_mels: their normalised log-mels [shape=(n, n_mels, frames)].
    audio: spectral settings.
    augment: the transforms, their ranges and the seed.
    mel_mean, mel_std: the training split's log-mel statistics.

  Returns:
    ``(mels, labels)`` with ``n * (1 + len(transforms))`` rows, originals first.
  """
  variants = augmented_log_mels(waveforms, audio=audio, augment=augment,
                                key=jax.random.key(augment.seed), mel_mean=mel_mean,
                                mel_std=mel_std, progress=True)
  mels = np.concatenate([np.asarray(train_mels, np.float32), np.asarray(variants)])
  repeats = 1 + len(augment.transforms)
  return mels, np.tile(np.asarray(labels), repeats)


class OnlineAugmentedBatches:
  """Training batches whose augmented variants are redrawn on the device every epoch.

  Epoch ``e`` draws from ``fold_in(key(seed), e)``, recomputes the variants' log-mels, and
  serves originals plus variants in a fresh shuffled order.

  Args:
    waveforms: training clips [shape=(n, samples)].
    labels: their quadrants [shape=(n,)].
    train_mels: their normalised log-mels.
    audio: spectral settings.
    augment: transforms, ranges and seed.
    mel_mean, mel_std: the training split's log-mel statistics.
    batch_size: examples per batch.
    mesh: the data mesh of the batches (see :class:`merjax.batches.split.DeviceBatches`).
  """

  def __init__(self, waveforms, labels, train_mels, *, audio: AudioConfig,
               augment: AugmentConfig, mel_mean: float, mel_std: float, batch_size: int,
               mesh: Mesh):
    self.waveforms = jax.device_put(np.asarray(waveforms, np.float32))
    self.originals = jax.device_put(np.asarray(train_mels, np.float32))
    self.labels = np.tile(np.asarray(labels), 1 + len(augment.transforms))
    self.audio, self.augment = audio, augment
    self.mel_mean, self.mel_std = mel_mean, mel_std
    self.batch_size = batch_size
    self.mesh = mesh

  def __len__(self) -> int:
    return -(-len(self.labels) // self.batch_size)

  def epoch(self, epoch: int = 0) -> Iterator[dict[str, jax.Array]]:
    from merjax.batches.split import DeviceBatches
    key = jax.random.fold_in(jax.random.key(self.augment.seed), epoch)
    variants = augmented_log_mels(self.waveforms, audio=self.audio, augment=self.augment,
                                  key=key, mel_mean=self.mel_mean, mel_std=self.mel_std)
    inputs = jnp.concatenate([self.originals, variants])
    batches = DeviceBatches({"inputs": inputs, "label": self.labels},
                            batch_size=self.batch_size, shuffle=True, seed=self.augment.seed,
                            mesh=self.mesh)
    yield from batches.epoch(epoch)


PIPELINES = ("auto", "precomputed", "waveforms")


def resolve_pipeline(augment: AugmentConfig) -> str:
  """``precomputed`` or ``waveforms`` for the CNN stage (see the module docstring's rule)."""
  if augment.pipeline not in PIPELINES:
    raise MerjaxError(f"augment pipeline must be one of {', '.join(PIPELINES)}, got "
                      f"{augment.pipeline!r}")
  if augment.pipeline != "auto":
    return augment.pipeline
  return "precomputed" if jax.default_backend() == "cpu" else "waveforms"


# A packed example row: the clip's samples, then its identity as int32 bit patterns.
_IDS = ("clip", "variant", "epoch")


def _variants(augment: AugmentConfig) -> tuple[str, ...]:
  """The transforms of the training set, in variant order (variant 0 is the original)."""
  return () if augment.mode == "none" else tuple(augment.transforms)


def example_log_mels(packed: jax.Array, *, audio: AudioConfig, augment: AugmentConfig,
                     mel_mean: float, mel_std: float) -> jax.Array:
  """Normalised log-mels of packed training examples, each augmented with its own key.

  Traceable; the heart of the waveform pipeline's step.

  Args:
    packed: ``[shape=(batch, samples + 3)]`` float32 rows from :class:`WaveformBatches`: the
      clip, then its clip index, variant (0: original, ``v``: ``transforms[v - 1]``) and epoch as
      int32 bit patterns.
    audio: spectral settings.
    augment: transforms, ranges, seed, mode and resampler.
    mel_mean, mel_std: the training split's log-mel statistics.

  Returns:
    ``[shape=(batch, n_mels, frames)]`` float32, equal to the precomputed pipeline's rows.
  """
  from merjax.audio import augment as transforms_module
  from merjax.audio import spectral

  samples = packed.shape[1] - len(_IDS)
  waveforms = packed[:, :samples]
  ids = jax.lax.bitcast_convert_type(packed[:, samples:], jnp.int32)
  clip, variant, epoch = (ids[:, k] for k in range(len(_IDS)))
  names = _variants(augment)
  if names:
    base = jax.random.key(augment.seed)
    if augment.mode == "online":
      keys = jax.vmap(lambda c, e: jax.random.fold_in(jax.random.fold_in(base, e), c))(clip, epoch)
    else:
      keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(base, clip)
    kwargs = _mel_kwargs(audio, augment)
    ranges = {k: kwargs.pop(k) for k in ("max_shift_seconds", "max_semitones", "min_rate",
                                         "max_rate", "max_gain_db", "resampler")}
    augmented, _ = transforms_module.augment_variants(
        keys, waveforms, transforms=names, sample_rate=audio.sample_rate, **ranges)
    for v, name in enumerate(names, start=1):
      waveforms = jnp.where((variant == v)[:, None], augmented[name], waveforms)
  mels = spectral._log_mel(waveforms, sample_rate=audio.sample_rate, n_fft=audio.n_fft,
                           hop_length=audio.hop_length, n_mels=audio.n_mels, fmin=audio.fmin,
                           fmax=audio.fmax, ref=audio.ref, amin=audio.amin, top_db=audio.top_db)
  return (mels - mel_mean) / mel_std


@dataclasses.dataclass(frozen=True)
class WaveformFrontEnd:
  """A model's ``apply`` that takes packed waveform rows as well as log-mels.

  Set as the CNN state's ``apply_fn`` (:meth:`WaveformTraining.front_end`, called by
  :func:`merjax.train.train_classifier`), it puts augmentation, log-mel and z-normalisation
  inside the jitted training step; log-mel inputs (validation, inference) pass straight
  through. The variables are the model's own, so checkpoints and the trained model are those
  of the plain CNN. Compares by value, so jitted steps are reused.

  Attributes:
    apply: the model's apply (``state.apply_fn``).
    audio: spectral settings.
    augment: the augmentation settings.
    mel_mean, mel_std: the training split's log-mel statistics.
    mesh: the data mesh of the step. The inputs are made under ``shard_map``: every device
      runs the one-device program on its own rows, with no communication. A clip's draws do
      not depend on the device count; its log-mel only to float rounding (XLA fuses a
      different per-device batch differently: up to 2.4e-4 dB in pitch-shifted rows, 1 vs 8
      CPU devices; the other transforms bit for bit).
  """

  apply: Callable
  audio: AudioConfig
  augment: AugmentConfig
  mel_mean: float
  mel_std: float
  mesh: Mesh

  def log_mels(self, packed: jax.Array) -> jax.Array:
    """:func:`example_log_mels` of packed rows (sharded along ``data``)."""
    fn = functools.partial(example_log_mels, audio=self.audio, augment=self.augment,
                           mel_mean=self.mel_mean, mel_std=self.mel_std)
    spec = jax.sharding.PartitionSpec(parallel.DATA_AXIS)
    return jax.shard_map(fn, mesh=self.mesh, in_specs=spec, out_specs=spec)(packed)

  def __call__(self, variables, inputs, *args, **kwargs):
    if inputs.ndim == 2:
      inputs = self.log_mels(inputs)
    return self.apply(variables, inputs, *args, **kwargs)


@jax.jit
def _pack(rows: jax.Array, index: jax.Array, clips: jax.Array, epoch: jax.Array) -> jax.Array:
  # Row-wise only: on a mesh every device packs its own rows, with no communication.
  index = index.astype(jnp.int32)
  ids = jnp.stack([index % clips, index // clips, jnp.broadcast_to(epoch, index.shape)], axis=1)
  return jnp.concatenate([rows, jax.lax.bitcast_convert_type(ids, jnp.float32)], axis=1)


class WaveformBatches:
  """The CNN's training batches as clips: each device holds and packs its own rows.

  The clips are stored once, as one split of :func:`merjax.batches.split.split_batches`:
  sharded over the devices when their share fits the device memory budget, streamed from the
  host otherwise. An epoch covers them ``1 + len(transforms)`` times (``repeats``): example
  ``j`` is variant ``j // n`` of clip ``j % n``, the order of the precomputed set (originals,
  then one block per transform), so with the same shuffling seed the batches hold the same
  examples as :class:`merjax.batches.split.DeviceBatches` over :func:`offline_training_set`'s
  result.

  Args:
    waveforms: training clips [shape=(n, samples)].
    labels: their quadrants [shape=(n,)].
    augment: mode and transforms (``none``: the originals only).
    batch_size: examples per global batch.
    seed: the shuffling seed (see :class:`merjax.batches.split.DeviceBatches`).
    mesh: the data mesh; batches come sharded along ``data``.
    device_memory_gb: GiB per device the clips may take there (default: from the device).
    memory_budget_bytes: the same in bytes (wins).

  Yields (from :meth:`epoch`) ``{"inputs": [shape=(batch, samples + 3)], "label", "mask",
  "index"}``, ``inputs`` packed for :func:`example_log_mels`.
  """

  def __init__(self, waveforms, labels, *, augment: AugmentConfig, batch_size: int,
               mesh: Mesh, seed: int = 0, device_memory_gb: float | None = None,
               memory_budget_bytes: int | None = None):
    from merjax.batches.split import split_batches
    self.clips = len(waveforms)
    self.mesh = mesh
    self.batches = split_batches(
        {"waveform": np.asarray(waveforms, np.float32), "label": np.asarray(labels)},
        batch_size=batch_size, shuffle=True, seed=seed, mesh=mesh,
        repeats=1 + len(_variants(augment)), device_memory_gb=device_memory_gb,
        memory_budget_bytes=memory_budget_bytes)

  def __len__(self) -> int:
    return len(self.batches)

  def epoch(self, epoch: int = 0) -> Iterator[dict[str, jax.Array]]:
    """Yields the packed batches of one epoch."""
    scalars = (np.int32(self.clips), np.int32(epoch))
    clips, number = parallel.replicate(scalars, self.mesh)
    for batch in self.batches.epoch(epoch):
      yield {"inputs": _pack(batch["waveform"], batch["index"], clips, number),
             "label": batch["label"], "mask": batch["mask"], "index": batch["index"]}


@dataclasses.dataclass(frozen=True, eq=False)
class OnlineTraining:
  """The CNN stage's training input with online augmentation of precomputed log-mels.

  A plain description: :meth:`batches` builds the :class:`OnlineAugmentedBatches` of a run.

  Attributes:
    waveforms: training clips [shape=(n, samples)].
    labels: their quadrants [shape=(n,)].
    train_mels: their normalised log-mels [shape=(n, n_mels, frames)].
    audio: spectral settings.
    augment: augmentation settings (``mode="online"``).
    mel_mean, mel_std: the training split's log-mel statistics.
  """

  waveforms: np.ndarray
  labels: np.ndarray
  train_mels: np.ndarray
  audio: AudioConfig
  augment: AugmentConfig
  mel_mean: float
  mel_std: float

  def front_end(self, apply: Callable, *, mesh: Mesh) -> Callable:
    """The state's ``apply_fn`` unchanged: the batches already hold log-mels."""
    del mesh
    return apply

  def batches(self, *, batch_size: int, seed: int, mesh: Mesh,
              device_memory_gb: float | None = None) -> OnlineAugmentedBatches:
    """The run's batches (``len`` and ``epoch(e)``); they shuffle with the augment seed, so
    ``seed`` is unused, and the variants are made on the devices, so is
    ``device_memory_gb``."""
    del seed, device_memory_gb
    return OnlineAugmentedBatches(self.waveforms, self.labels, self.train_mels,
                                  audio=self.audio, augment=self.augment,
                                  mel_mean=self.mel_mean, mel_std=self.mel_std,
                                  batch_size=batch_size, mesh=mesh)


@dataclasses.dataclass(frozen=True, eq=False)
class WaveformTraining:
  """The CNN stage's training input as clips (the ``waveforms`` pipeline).

  Attributes:
    waveforms: training clips [shape=(n, samples)].
    labels: their quadrants [shape=(n,)].
    audio: spectral settings.
    augment: augmentation settings.
    mel_mean, mel_std: the training split's log-mel statistics.
  """

  waveforms: np.ndarray
  labels: np.ndarray
  audio: AudioConfig
  augment: AugmentConfig
  mel_mean: float
  mel_std: float

  @property
  def size(self) -> int:
    """Examples per epoch (clips times variants)."""
    return len(self.labels) * (1 + len(_variants(self.augment)))

  def front_end(self, apply: Callable, *, mesh: Mesh) -> WaveformFrontEnd:
    """Wraps a CNN state's ``apply_fn`` (``mesh``: the step's data mesh)."""
    return WaveformFrontEnd(apply=apply, audio=self.audio, augment=self.augment,
                            mel_mean=float(self.mel_mean), mel_std=float(self.mel_std),
                            mesh=mesh)

  def batches(self, *, batch_size: int, seed: int, mesh: Mesh,
              device_memory_gb: float | None = None) -> WaveformBatches:
    """The run's batches. ``seed`` shuffles; online runs shuffle with the augment seed, as
    :class:`OnlineAugmentedBatches` does."""
    if self.augment.mode == "online":
      seed = self.augment.seed
    return WaveformBatches(self.waveforms, self.labels, augment=self.augment,
                           batch_size=batch_size, seed=seed, mesh=mesh,
                           device_memory_gb=device_memory_gb)


# The CNN's training input when it is built per run rather than held as arrays.
CNNTraining = OnlineTraining | WaveformTraining
