"""merjax.audio.spectral against librosa 0.11 (the reference the paper's features come from)."""

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from merjax.audio import (
  log_mel,
  mel_filterbank,
  mel_frames,
  mel_spectrogram,
  power_to_db,
  spectral,
  stft,
)
from merjax.errors import MerjaxError

SR = 16000


def music_like(seconds, seed, *, noise_floor=1e-3):
  """Harmonic tones with attack/decay envelopes over a faint noise floor (a recording's hiss)."""
  rng = np.random.default_rng(seed)
  n = int(seconds * SR)
  t = np.arange(n) / SR
  y = np.zeros(n)
  for _ in range(6):
    f0, onset, decay = rng.uniform(80, 1000), rng.uniform(0, 0.7 * seconds), rng.uniform(0.3, 3)
    envelope = np.clip((t - onset) / 0.02, 0, 1) * np.exp(-np.maximum(t - onset, 0) / decay)
    for h in range(1, 12):
      if f0 * h < SR / 2:
        y += (envelope * rng.uniform(0.1, 0.5) / h
              * np.sin(2 * np.pi * f0 * h * t + rng.uniform(0, 6)))
  y = 0.3 * y / np.abs(y).max() + noise_floor * rng.standard_normal(n)
  return y.astype(np.float32)


def librosa_log_mel(y):
  return librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=SR), ref=1.0, amin=1e-10,
                             top_db=80.0)


def test_log_mel_equals_librosa_on_music_and_noise():
  rng = np.random.default_rng(7)
  clips = np.stack([music_like(2.5, 0), music_like(2.5, 1),
                    (0.1 * rng.standard_normal(40000)).astype(np.float32),
                    (0.8 * rng.uniform(-1, 1, 40000)).astype(np.float32)])
  ours = np.asarray(log_mel(clips))
  assert ours.shape == (4, 128, mel_frames(40000)) and ours.dtype == np.float32
  for clip, got in zip(clips, ours):
    np.testing.assert_allclose(got, librosa_log_mel(clip), rtol=0, atol=1e-3)


def test_log_mel_pure_tones_within_float32_rounding():
  # Noise-free tones put bands right at the -80 dB floor, where float32 FFT rounding (librosa
  # runs its FFT in float64) shows up; the error stays at the 1e-3 dB scale.
  clip = music_like(2.0, 3, noise_floor=0.0)
  got = np.asarray(log_mel(clip[None]))[0]
  expected = librosa_log_mel(clip)
  assert np.abs(got - expected).max() < 3e-3
  loud = expected > expected.max() - 60  # away from the floor: float32 is ample
  assert np.abs(got - expected)[loud].max() < 1e-4


def test_top_db_floor_is_per_clip():
  loud, quiet = music_like(1.0, 4), 1e-3 * music_like(1.0, 5)
  ours = np.asarray(log_mel(np.stack([loud, quiet])))
  # A floor shared by the batch would lift the quiet clip to the loud clip's max - 80 dB.
  assert ours[1].min() < ours[0].max() - 80.0 - 5.0
  for clip, got in zip((loud, quiet), ours):
    assert got.min() >= got.max() - 80.0 - 1e-4
    np.testing.assert_allclose(got, librosa_log_mel(clip), atol=1e-3)


def test_thirty_seconds_gives_128_by_938():
  clip = music_like(30.0, 6)
  assert mel_frames(clip.size) == 938
  got = log_mel(jnp.asarray(clip[None]))
  assert got.shape == (1, 128, 938)
  np.testing.assert_allclose(np.asarray(got)[0, :, ::50], librosa_log_mel(clip)[:, ::50], atol=1e-3)


def test_odd_batches_and_short_clips():
  # Odd batch sizes exercise the remainder of the per-step loop; lengths below one frame work
  # with center=True as in librosa.
  clips = np.stack([music_like(0.1, s) for s in range(3)])
  for length in (1, 700, 1600):
    got = np.asarray(log_mel(clips[:, :length]))
    assert got.shape == (3, 128, mel_frames(length))
    for clip, row in zip(clips[:, :length], got):
      np.testing.assert_allclose(row, librosa_log_mel(clip), atol=1e-3)


def test_silence_is_finite_and_at_amin():
  got = np.asarray(log_mel(np.zeros((2, 8000), np.float32)))
  np.testing.assert_array_equal(got, np.full_like(got, -100.0))


def test_mel_spectrogram_and_stft_equal_librosa():
  clip = music_like(1.0, 8)
  power = np.asarray(mel_spectrogram(clip[None]))[0]
  expected = librosa.feature.melspectrogram(y=clip, sr=SR)
  np.testing.assert_allclose(power, expected, rtol=0, atol=1e-5 * expected.max())
  spectrum = np.asarray(stft(clip[None]))[0]
  reference = librosa.stft(clip)
  assert spectrum.shape == reference.shape
  assert np.abs(spectrum - reference).max() < 1e-6 * np.abs(reference).max()
  # A hop that does not divide n_fft takes the gather path.
  odd = np.asarray(stft(clip[None], n_fft=1024, hop_length=300))[0]
  np.testing.assert_allclose(odd, librosa.stft(clip, n_fft=1024, hop_length=300), atol=1e-4)


def test_other_mel_settings():
  clip = music_like(1.0, 9)
  got = np.asarray(log_mel(clip[None], n_mels=64, fmin=50.0, fmax=6000.0, top_db=None))[0]
  expected = librosa.power_to_db(
      librosa.feature.melspectrogram(y=clip, sr=SR, n_mels=64, fmin=50.0, fmax=6000.0),
      ref=1.0, amin=1e-10, top_db=None)
  np.testing.assert_allclose(got, expected, atol=1e-3)


def test_power_to_db_matches_librosa():
  power = np.abs(np.random.default_rng(0).standard_normal((3, 20, 30))).astype(np.float32) ** 4
  got = np.asarray(power_to_db(power, ref=2.0, amin=1e-6, top_db=40.0))
  for p, g in zip(power, got):
    np.testing.assert_allclose(g, librosa.power_to_db(p, ref=2.0, amin=1e-6, top_db=40.0),
                               atol=1e-4)


def test_filterbank_is_cached_and_read_only():
  fb = mel_filterbank()
  assert fb is mel_filterbank() and fb.shape == (128, 1025) and fb.dtype == np.float32
  np.testing.assert_array_equal(fb, librosa.filters.mel(sr=SR, n_fft=2048, n_mels=128))
  with pytest.raises(ValueError):
    fb[0, 0] = 1.0
  assert spectral.hann_window(2048) is spectral.hann_window(2048)


def test_composes_with_jit_and_vmap():
  clips = np.stack([music_like(0.5, s) for s in range(4)])
  direct = np.asarray(log_mel(clips))
  inside = np.asarray(jax.jit(lambda w: log_mel(w) + 0.0)(clips))
  mapped = np.asarray(jax.vmap(lambda w: log_mel(w[None])[0])(clips))
  np.testing.assert_allclose(inside, direct, atol=1e-5)
  np.testing.assert_allclose(mapped, direct, atol=1e-4)


@pytest.mark.parametrize("shape", [(16000,), (1, 2, 100), (2, 0)])
def test_bad_shapes_raise(shape):
  with pytest.raises(MerjaxError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
    log_mel(np.zeros(shape, np.float32))


def test_bad_db_settings_raise():
  with pytest.raises(MerjaxError, match="amin"):
    log_mel(np.zeros((1, 100), np.float32), amin=0.0)
  with pytest.raises(MerjaxError, match="top_db"):
    power_to_db(np.ones((1, 3)), top_db=-1.0)
