"""From waveforms to model inputs: batched log-mels and their global normalisation."""

from __future__ import annotations

import numpy as np

from merjax.config import AudioConfig

# The paper's front end (frozen, so one shared default is safe).
PAPER_AUDIO = AudioConfig()


def log_mels(waveforms: np.ndarray, *, audio: AudioConfig = PAPER_AUDIO, batch_size: int = 16,
             progress: bool = False, desc: str = "log-mel") -> np.ndarray:
  """Log-mel spectrograms of many clips, computed in fixed-size jitted batches.

  Args:
    waveforms: mono clips of equal length [shape=(n, samples)].
    audio: the spectral settings.
    batch_size: clips per jitted call (the last batch is padded, so one compile serves all).
    progress: show a progress bar on stderr.
    desc: progress-bar label.

  Returns:
    float32 log-mels [shape=(n, n_mels, frames)].
  """
  import jax
  from tqdm.auto import tqdm

  from merjax.audio import log_mel

  waveforms = np.asarray(waveforms, np.float32)
  if waveforms.ndim != 2 or len(waveforms) == 0:
    raise ValueError(f"waveforms must be [shape=(n, samples)] with n > 0, got {waveforms.shape}")
  n = len(waveforms)
  batch_size = min(batch_size, n)
  out = []
  for start in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, unit="batch"):
    chunk = waveforms[start:start + batch_size]
    pad = batch_size - len(chunk)
    if pad:
      chunk = np.concatenate([chunk, np.zeros((pad, chunk.shape[1]), np.float32)])
    mel = log_mel(chunk, sample_rate=audio.sample_rate, n_fft=audio.n_fft,
                  hop_length=audio.hop_length, n_mels=audio.n_mels, fmin=audio.fmin,
                  fmax=audio.fmax, ref=audio.ref, amin=audio.amin, top_db=audio.top_db)
    out.append(np.asarray(jax.device_get(mel))[:batch_size - pad])
  return np.concatenate(out)


def mel_statistics(train_log_mels: np.ndarray) -> tuple[float, float]:
  """Global mean and standard deviation of the training split's log-mels (one scalar each)."""
  values = np.asarray(train_log_mels, np.float64)
  std = float(values.std())
  if not np.isfinite(std) or std == 0.0:
    raise ValueError(f"training log-mels have no spread (std={std}); are all clips silent?")
  return float(values.mean()), std
