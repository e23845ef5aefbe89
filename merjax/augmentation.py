"""The CNN branch's augmented training set, offline (the paper) or online (fresh per epoch).

Both modes apply each of ``config.augment.transforms`` to every training clip on its own, so
the CNN trains on the originals plus one variant per transform (x5 with the paper's four).
Offline draws the parameters once from ``config.augment.seed``: the same seed gives the same
set. Online draws fresh parameters every epoch and recomputes the augmented log-mels on the
device, inside the training pipeline. Clip ``i`` always draws from ``fold_in(key, i)``, so a
clip's variant does not depend on the batch it was computed in.
"""

from __future__ import annotations

from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from merjax.config import AudioConfig, AugmentConfig

_CHUNK = 8  # clips per jitted augment-then-mel call: bounds the phase vocoder's memory


def _mel_kwargs(audio: AudioConfig, augment: AugmentConfig) -> dict:
  return dict(sample_rate=audio.sample_rate, n_fft=audio.n_fft, hop_length=audio.hop_length,
              n_mels=audio.n_mels, fmin=audio.fmin, fmax=audio.fmax, ref=audio.ref,
              amin=audio.amin, top_db=audio.top_db, max_shift_seconds=augment.max_shift_seconds,
              max_semitones=augment.max_semitones, min_rate=augment.min_rate,
              max_rate=augment.max_rate, max_gain_db=augment.max_gain_db)


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
  per_transform = {name: [] for name in transforms}
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
    mesh: optional data mesh for the batches (see :class:`merjax.data.memory.DeviceBatches`).
  """

  def __init__(self, waveforms, labels, train_mels, *, audio: AudioConfig,
               augment: AugmentConfig, mel_mean: float, mel_std: float, batch_size: int,
               mesh=None):
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
    from merjax.data.memory import DeviceBatches
    key = jax.random.fold_in(jax.random.key(self.augment.seed), epoch)
    variants = augmented_log_mels(self.waveforms, audio=self.audio, augment=self.augment,
                                  key=key, mel_mean=self.mel_mean, mel_std=self.mel_std)
    inputs = jnp.concatenate([self.originals, variants])
    batches = DeviceBatches({"inputs": inputs, "label": self.labels},
                            batch_size=self.batch_size, shuffle=True, seed=self.augment.seed,
                            mesh=self.mesh)
    yield from batches.epoch(epoch)
