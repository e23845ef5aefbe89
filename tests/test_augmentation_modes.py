"""Offline (x5, seeded) and online (fresh per epoch) augmented CNN training sets."""

import numpy as np
import pytest

from merjax import parallel
from merjax.batches.augmented import OnlineAugmentedBatches, offline_training_set
from merjax.config import AudioConfig, AugmentConfig
from merjax.inputs.log_mel import log_mels

AUDIO = AudioConfig(clip_seconds=3.0)


@pytest.fixture(scope="module")
def clips():
  rng = np.random.default_rng(0)
  t = np.arange(AUDIO.clip_samples) / AUDIO.sample_rate
  freqs = rng.uniform(200, 800, size=(3, 1))
  waveforms = (0.3 * np.sin(2 * np.pi * freqs * t) + 0.01 * rng.normal(size=(3, t.size)))
  waveforms = waveforms.astype(np.float32)
  return waveforms, np.array([0, 1, 2], np.int32), log_mels(waveforms, audio=AUDIO)


def test_offline_set_is_five_fold_seeded_and_reproducible(clips):
  waveforms, labels, mels = clips
  augment = AugmentConfig(mode="offline", seed=3)
  first, first_labels = offline_training_set(waveforms, labels, mels, audio=AUDIO,
                                             augment=augment, mel_mean=0.0, mel_std=1.0)
  again, _ = offline_training_set(waveforms, labels, mels, audio=AUDIO, augment=augment,
                                  mel_mean=0.0, mel_std=1.0)
  other, _ = offline_training_set(waveforms, labels, mels, audio=AUDIO,
                                  augment=augment.replace(seed=4), mel_mean=0.0, mel_std=1.0)
  assert first.shape == (15, 128, AUDIO.frames)
  np.testing.assert_array_equal(first_labels, np.tile(labels, 5))
  np.testing.assert_array_equal(first[:3], mels)            # originals first
  np.testing.assert_array_equal(first, again)               # same seed, same set
  assert not np.allclose(first[3:], other[3:])              # another seed, other variants
  for k in range(1, 5):                                      # every variant differs from its clip
    assert not np.allclose(first[3 * k:3 * k + 3], mels)
  # power shift by g dB moves every non-floored bin by g dB: the variant is a pure level change
  power = first[12:15] - mels
  assert np.all(np.abs(power.std(axis=(1, 2))) < 2.0)


def test_online_batches_redraw_every_epoch_and_cover_the_set(clips):
  waveforms, labels, mels = clips
  source = OnlineAugmentedBatches(waveforms, labels, mels, audio=AUDIO,
                                  augment=AugmentConfig(mode="online", seed=0), mel_mean=0.0,
                                  mel_std=1.0, batch_size=4,
                                  mesh=parallel.make_data_mesh(devices=1))
  epochs = []
  for epoch in (0, 1):
    batches = list(source.epoch(epoch))
    assert len(batches) == len(source) == 4
    inputs = np.concatenate([np.asarray(b["inputs"])[np.asarray(b["mask"]) > 0]
                             for b in batches])
    got_labels = np.concatenate([np.asarray(b["label"])[np.asarray(b["mask"]) > 0]
                                 for b in batches])
    assert inputs.shape == (15, 128, AUDIO.frames)
    np.testing.assert_array_equal(np.sort(got_labels), np.sort(np.tile(labels, 5)))
    epochs.append(inputs)
  # the originals are in both epochs; the variants were drawn afresh
  def originals_found(inputs):
    return sum(any(np.array_equal(row, m) for row in inputs) for m in mels)
  assert originals_found(epochs[0]) == originals_found(epochs[1]) == 3
  assert not np.allclose(np.sort(epochs[0].ravel()), np.sort(epochs[1].ravel()))
