"""The built-in handcrafted-feature extractor (librosa + numpy, one STFT per clip).

Descriptors are grouped by the eight musical dimensions of Panda et al. (2020): melody, harmony,
rhythm, dynamics, tone colour, expressivity, texture and form. Every descriptor is computed once
per clip from shared representations (the magnitude STFT with the librosa defaults of the CNN
input, its mel, chroma, onset-strength and harmonic-salience projections) and summarised by
statistics; columns are named ``dimension.descriptor.statistic``, e.g.
``tone_colour.mfcc_03.mean`` or ``rhythm.tempo.value``.

References:
  R. Panda, R. Malheiro, R. P. Paiva, "Novel Audio Features for Music Emotion Recognition",
  IEEE Transactions on Affective Computing 11(4), 2020 (the eight dimensions).
  C. L. Krumhansl, "Cognitive Foundations of Musical Pitch", 1990 (key profiles).
  W. A. Sethares, "Tuning, Timbre, Spectrum, Scale", 1998 (Plomp-Levelt roughness model).
  J. Foote, "Automatic audio segmentation using a measure of audio novelty", ICME 2000.
"""

from __future__ import annotations

import dataclasses
import fractions
import functools
from collections.abc import Callable, Sequence

import librosa
import numpy as np
import scipy.fft
import scipy.ndimage
import scipy.signal
import scipy.sparse
from librosa.version import version as librosa_version

from merjax.features.stats import FULL, SHORT, STATISTICS, VALUE, summarize

VERSION = "1"  # bump whenever a descriptor changes: it invalidates cached features
DIMENSIONS: tuple[str, ...] = ("melody", "harmony", "rhythm", "dynamics", "tone_colour",
                               "expressivity", "texture", "form")
N_FFT = 2048
HOP = 512
N_MELS = 128
N_MFCC = 20
_EPS = 1e-10
_BLOCK = 32  # frames per ~1 s block (form and chord analysis at 16 kHz)
_PITCH_MIDI = np.arange(40.0, 88.5, 0.5)  # salience candidates: E2 .. E6 in quarter tones
_PITCH_CLASSES = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
# Krumhansl-Kessler probe-tone profiles, tonic first.
_KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
_KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])
_BANDS = ((0.0, 200.0), (200.0, 800.0), (800.0, 3200.0), (3200.0, float("inf")))
_TEMPO_BANDS = ((30.0, 60.0), (60.0, 90.0), (90.0, 120.0), (120.0, 160.0), (160.0, 320.0))


@dataclasses.dataclass(frozen=True)
class Descriptor:
  """One descriptor: a frame series (or clip value) per part, summarised by ``stats``."""

  dimension: str
  name: str
  description: str
  stats: tuple[str, ...]
  parts: tuple[str, ...] = ()
  part_descriptions: tuple[str, ...] = ()
  compute: Callable[[Analysis], np.ndarray] = dataclasses.field(
      repr=False, compare=False, kw_only=True)

  def columns(self) -> list[tuple[str, str]]:
    """``(column name, one-line description)`` for every column of this descriptor."""
    out = []
    parts = self.parts or ("",)
    notes = self.part_descriptions or ("",) * len(parts)
    for part, note in zip(parts, notes):
      base = f"{self.name}_{part}" if part else self.name
      what = f"{self.description}{f' ({note})' if note else ''}"
      for stat in self.stats:
        out.append((f"{self.dimension}.{base}.{stat}", f"{what}: {STATISTICS[stat]}"))
    return out


_REGISTRY: list[Descriptor] = []


def _descriptor(dimension: str, name: str, description: str, stats: Sequence[str] = FULL, *,
                parts: Sequence[str] = (), part_descriptions: Sequence[str] = ()):
  """Registers a descriptor function; registration order is the column order."""
  assert dimension in DIMENSIONS, dimension

  def register(fn):
    _REGISTRY.append(Descriptor(dimension, name, description, tuple(stats), tuple(parts),
                                tuple(part_descriptions), compute=fn))
    return fn
  return register


# ---------------------------------------------------------------------------------------------
# Constants built once per sample rate.


@functools.lru_cache(maxsize=8)
def _filters(sample_rate: int) -> dict[str, np.ndarray]:
  freqs = librosa.fft_frequencies(sr=sample_rate, n_fft=N_FFT)
  mel = librosa.filters.mel(sr=sample_rate, n_fft=N_FFT, n_mels=N_MELS).astype(np.float32)
  chroma = librosa.filters.chroma(sr=sample_rate, n_fft=N_FFT, tuning=0.0).astype(np.float32)
  # Harmonic-summation salience: 10 harmonics with decaying weights, each spread over +-2 FFT
  # bins with a triangular kernel so that a partial anywhere near it counts (the Hann window's
  # main lobe is 4 bins wide; candidates are a quarter tone apart).
  salience = np.zeros((len(_PITCH_MIDI), len(freqs)), np.float32)
  f0 = librosa.midi_to_hz(_PITCH_MIDI)
  for h in range(1, 11):
    pos = h * f0 * N_FFT / sample_rate
    for offset in range(-2, 3):
      bins = np.round(pos).astype(int) + offset
      ok = (bins >= 0) & (bins < len(freqs)) & (pos < len(freqs) - 1)
      weight = np.maximum(0.0, 1.0 - np.abs(bins - pos) / 2.0)
      salience[np.flatnonzero(ok), bins[ok]] += 0.85 ** (h - 1) * weight[ok]
  with np.errstate(divide="ignore"):  # the DC bin has no A-weight (-inf dB, weight 0)
    a_weight = librosa.db_to_power(librosa.A_weighting(freqs)).astype(np.float32)
  bass = np.where(freqs <= 300.0, chroma, 0.0).astype(np.float32)  # below about D4
  for value in (freqs, chroma, bass, a_weight):
    value.flags.writeable = False
  # Each mel filter and salience candidate touches few bins: sparse products are much faster.
  return {"freqs": freqs, "mel": scipy.sparse.csr_matrix(mel), "chroma": chroma,
          "bass_chroma": bass, "salience": scipy.sparse.csr_matrix(salience),
          "a_weight": a_weight}


@functools.lru_cache(maxsize=8)
def _spectral_weights(sample_rate: int) -> np.ndarray:
  """Rows whose product with a magnitude spectrum, over its sum, give linear descriptors.

  Rows: frequency (kHz, to keep the fourth moment well scaled) to the powers 1..4; the slope of
  the normalised spectrum against frequency (per MHz); the MPEG-7 decrease numerator
  ``sum_{k>0} (S_k - S_0) / k``.
  """
  freqs = _filters(sample_rate)["freqs"]
  f = freqs / 1000.0
  centred = freqs - freqs.mean()
  slope = centred / (centred @ centred) * 1e6
  decrease = np.zeros_like(freqs)
  decrease[1:] = 1.0 / np.arange(1, len(freqs))
  decrease[0] = -decrease[1:].sum()
  weights = np.stack([f, f ** 2, f ** 3, f ** 4, slope, decrease]).astype(np.float64)
  weights.flags.writeable = False
  return weights


@functools.lru_cache(maxsize=1)
def _key_profiles() -> np.ndarray:
  """The 24 z-scored key profiles [shape=(24, 12)]: C..B major, then C..B minor."""
  rows = [np.roll(p, k) for p in (_KK_MAJOR, _KK_MINOR) for k in range(12)]
  profiles = np.array(rows)
  profiles = (profiles - profiles.mean(1, keepdims=True)) / profiles.std(1, keepdims=True)
  profiles.flags.writeable = False
  return profiles


@functools.lru_cache(maxsize=1)
def _chord_templates() -> np.ndarray:
  """Unit-norm major (rows 0..11) and minor (rows 12..23) triad templates [shape=(24, 12)]."""
  rows = []
  for third in (4, 3):
    for root in range(12):
      t = np.zeros(12)
      t[[root, (root + third) % 12, (root + 7) % 12]] = 1.0
      rows.append(t / np.sqrt(3.0))
  templates = np.array(rows)
  templates.flags.writeable = False
  return templates


# ---------------------------------------------------------------------------------------------
# Shared representations, each computed at most once per clip.


def _safe_div(a, b):
  return a / np.maximum(b, _EPS)


def _zscore(x: np.ndarray, axis: int) -> np.ndarray:
  return _safe_div(x - x.mean(axis, keepdims=True), x.std(axis, keepdims=True))


def _key_correlation(chroma: np.ndarray) -> np.ndarray:
  """Pearson correlation of chroma vectors [shape=(12, n)] with the 24 key profiles."""
  return _key_profiles() @ _zscore(chroma, 0) / 12.0


def _blocks(x: np.ndarray, size: int) -> np.ndarray:
  """Means over consecutive blocks of ``size`` frames [shape=(rows, frames // size)] (>= 1)."""
  n = max(1, x.shape[1] // size)
  if x.shape[1] < size:
    return x.mean(1, keepdims=True)
  return x[:, :n * size].reshape(x.shape[0], n, size).mean(2)


def _frame_sums(x: np.ndarray) -> np.ndarray:
  """Sums of ``x`` over centred, zero-padded frames of N_FFT samples every HOP samples."""
  total = np.concatenate([[0.0], np.cumsum(x, dtype=np.float64)])
  centres = np.arange(1 + len(x) // HOP) * HOP
  start = np.clip(centres - N_FFT // 2, 0, len(x))
  stop = np.clip(centres + N_FFT // 2, 0, len(x))
  return total[stop] - total[start]


def _track_beats(onset_env: np.ndarray, *, period: float, tightness: float = 100.0) -> np.ndarray:
  """Dynamic-programming beat tracking (Ellis 2007) at a known beat period in frames.

  The recursion looks back at least half a period, so whole half-period blocks of frames are
  updated at once.

  Returns:
    Beat frames, trimmed of weak leading and trailing beats.
  """
  n = len(onset_env)
  period = max(int(round(period)), 2)
  env = onset_env / max(float(onset_env.std(ddof=1)) if n > 1 else 0.0, _EPS)
  window = np.exp(-0.5 * (np.arange(-period, period + 1) * 32.0 / period) ** 2)
  local = np.convolve(env, window, mode="same")
  offsets = np.arange(-2 * period, -(period // 2) + 1)
  penalty = -tightness * np.log(-offsets / period) ** 2
  score = np.zeros(n)
  back = np.full(n, -1)
  step = period // 2
  for start in range(0, n, step):
    frames = np.arange(start, min(start + step, n))
    candidates = frames[:, None] + offsets
    total = np.where(candidates >= 0, score[np.maximum(candidates, 0)] + penalty, -np.inf)
    best = np.argmax(total, axis=1)
    gain = total[np.arange(len(frames)), best]
    chained = gain > 0  # otherwise a new beat sequence starts here
    score[frames] = local[frames] + np.where(chained, gain, 0.0)
    back[frames] = np.where(chained, candidates[np.arange(len(frames)), best], -1)
  peaks = np.flatnonzero((score[1:-1] > score[:-2]) & (score[1:-1] >= score[2:])) + 1
  if len(peaks) == 0:
    return np.zeros(0, int)
  tail = peaks[score[peaks] >= 0.5 * np.median(score[peaks])][-1]
  chain = [tail]
  while back[chain[-1]] >= 0:
    chain.append(back[chain[-1]])
  beats = np.array(chain[::-1])
  strong = local[beats] >= 0.5 * np.sqrt(np.mean(local[beats] ** 2))
  keep = np.flatnonzero(strong)
  return beats[keep[0]:keep[-1] + 1] if len(keep) else beats


class Analysis:
  """Per-clip representations shared by the descriptors (lazily computed, then cached)."""

  def __init__(self, y: np.ndarray, sample_rate: int):
    y = np.asarray(y, np.float32)
    if len(y) < N_FFT:
      y = np.pad(y, (0, N_FFT - len(y)))
    self.y = y
    self.sr = sample_rate
    self.frame_rate = sample_rate / HOP
    self.duration = len(y) / sample_rate
    self.f = _filters(sample_rate)

  @functools.cached_property
  def mag(self) -> np.ndarray:
    """The clip's one STFT: magnitude [shape=(1 + n_fft // 2, frames)]."""
    return np.abs(librosa.stft(self.y, n_fft=N_FFT, hop_length=HOP, center=True,
                               pad_mode="constant"))

  @functools.cached_property
  def power(self) -> np.ndarray:
    return self.mag * self.mag

  @functools.cached_property
  def mag_sum(self) -> np.ndarray:
    return self.mag.sum(0)

  @functools.cached_property
  def mel(self) -> np.ndarray:
    return self.f["mel"] @ self.power

  @functools.cached_property
  def log_mel(self) -> np.ndarray:
    return librosa.power_to_db(self.mel, ref=1.0, amin=_EPS, top_db=80.0)

  @functools.cached_property
  def mfcc(self) -> np.ndarray:
    return scipy.fft.dct(self.log_mel, axis=0, type=2, norm="ortho")[:N_MFCC]

  @functools.cached_property
  def chroma(self) -> np.ndarray:
    raw = self.f["chroma"] @ self.power
    return _safe_div(raw, raw.max(0, keepdims=True))

  @functools.cached_property
  def tonal_chroma(self) -> np.ndarray:
    """Chroma plus the chroma of the bass register (below 300 Hz) for key finding.

    The bass dwells on chord roots and the tonic, which separates a key from its relative
    major or minor (the same pitch set) better than the full chroma alone.
    """
    raw = self.f["bass_chroma"] @ self.power
    return self.chroma + _safe_div(raw, raw.max(0, keepdims=True))

  @functools.cached_property
  def rms(self) -> np.ndarray:
    """RMS of centred 2048-sample frames (as librosa.feature.rms), from a running sum."""
    return np.sqrt(np.maximum(_frame_sums(np.square(self.y, dtype=np.float64)), 0.0) / N_FFT)

  @functools.cached_property
  def zcr(self) -> np.ndarray:
    """Zero crossings per sample in centred 2048-sample frames."""
    crossings = np.zeros(len(self.y))
    crossings[1:] = np.signbit(self.y[1:]) != np.signbit(self.y[:-1])
    return _frame_sums(crossings) / N_FFT

  @functools.cached_property
  def loudness(self) -> np.ndarray:
    """Frame level in dB full scale (RMS), floored at -100 dB."""
    return 20.0 * np.log10(np.maximum(self.rms, 1e-5))

  @functools.cached_property
  def active(self) -> np.ndarray:
    """Frames within 60 dB of the loudest and above -80 dBFS (the others count as silence)."""
    return (self.loudness > self.loudness.max() - 60.0) & (self.loudness > -80.0)

  @functools.cached_property
  def onset_env(self) -> np.ndarray:
    return librosa.onset.onset_strength(S=self.log_mel, sr=self.sr, hop_length=HOP)

  @functools.cached_property
  def onsets(self) -> np.ndarray:
    # A peak must top its +-2 frames and follow the last onset by 2 frames or more: librosa's
    # defaults (in seconds, < 1 frame at hop 512 and 16 kHz) split one click into two onsets.
    return librosa.onset.onset_detect(onset_envelope=self.onset_env, sr=self.sr,
                                      hop_length=HOP, units="frames", pre_max=2, post_max=3,
                                      wait=2)

  @functools.cached_property
  def tempo(self) -> tuple[float, float]:
    """Global tempo (BPM, sub-lag precision) and its pulse clarity.

    The (lightly smoothed) onset envelope's autocorrelation over the whole clip, weighted by
    librosa's log-normal tempo prior (centred on 120 BPM, one octave wide), peak-picked with
    parabolic interpolation.
    """
    # Smoothing by a frame spreads beat periods that are not a whole number of frames over
    # neighbouring lags; otherwise twice the period (a whole number) wins too often.
    env = scipy.ndimage.gaussian_filter1d(self.onset_env.astype(np.float64), 1.0)
    env -= env.mean()
    n = len(env)
    spectrum = np.fft.rfft(env, 2 * n)
    ac = np.fft.irfft(spectrum * np.conj(spectrum))[:n]
    if ac[0] <= _EPS:
      return float("nan"), 0.0
    ac = ac / ac[0]
    lags = np.arange(n, dtype=np.float64)
    with np.errstate(divide="ignore"):
      bpm = 60.0 * self.frame_rate / lags
    valid = (bpm >= 30.0) & (bpm <= 320.0)
    weighted = np.where(valid, np.maximum(ac, 0.0) * np.exp(
        -0.5 * np.log2(np.where(valid, bpm, 120.0) / 120.0) ** 2), -np.inf)
    lag = int(np.argmax(weighted))
    if not np.isfinite(weighted[lag]) or weighted[lag] <= 0:
      return float("nan"), 0.0
    shift = 0.0
    if 0 < lag < n - 1:
      a, b, c = ac[lag - 1], ac[lag], ac[lag + 1]
      denom = a - 2 * b + c
      if denom < 0:
        shift = float(np.clip(0.5 * (a - c) / denom, -0.5, 0.5))
    return float(60.0 * self.frame_rate / (lag + shift)), float(ac[lag])

  @functools.cached_property
  def tonnetz(self) -> np.ndarray:
    return librosa.feature.tonnetz(chroma=self.chroma, sr=self.sr)

  @functools.cached_property
  def tempogram(self) -> np.ndarray:
    return librosa.feature.tempogram(onset_envelope=self.onset_env, sr=self.sr,
                                     hop_length=HOP, win_length=384)

  @functools.cached_property
  def beats(self) -> np.ndarray:
    bpm = self.tempo[0]
    if not np.isfinite(bpm):
      return np.zeros(0, int)
    return _track_beats(self.onset_env, period=60.0 * self.frame_rate / bpm)

  @functools.cached_property
  def hpss(self) -> tuple[np.ndarray, np.ndarray]:
    """Harmonic and percussive parts of the mel power (Fitzgerald 2010).

    Median filtering across 17 frames (harmonic) and 5 bands (percussive) of the mel power
    pooled to 64 bands, then Wiener-like soft masks; the same idea as ``librosa.decompose.hpss``
    at half the cost.
    """
    mel = self.mel.reshape(N_MELS // 2, 2, -1).sum(1)
    harmonic = scipy.ndimage.median_filter(mel, size=(1, 17), mode="reflect")
    percussive = scipy.ndimage.median_filter(mel, size=(5, 1), mode="reflect")
    h2, p2 = harmonic * harmonic, percussive * percussive
    mask = _safe_div(h2, h2 + p2)
    return mel * mask, mel * (1.0 - mask)

  @functools.cached_property
  def peaks(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The 10 strongest spectral peaks per frame in 50 Hz..5 kHz, and the peak count.

    Returns ``(freqs, amps, count)``: [shape=(10, frames)] twice, and [shape=(frames,)]
    counting the peaks within 20 dB of the frame's strongest.
    """
    freqs = self.f["freqs"]
    lo, hi = np.searchsorted(freqs, [50.0, 5000.0])
    band = self.mag[lo - 1:hi + 1]
    is_peak = (band[1:-1] > band[:-2]) & (band[1:-1] >= band[2:])
    values = np.where(is_peak, band[1:-1], 0.0)
    k = min(10, values.shape[0])
    idx = np.argpartition(-values, k - 1, axis=0)[:k]
    amps = np.take_along_axis(values, idx, axis=0)
    count = np.sum(values > 0.1 * values.max(0, keepdims=True), axis=0)
    count = np.where(values.max(0) > 0, count, 0)
    return freqs[lo:hi][idx], amps, count

  @functools.cached_property
  def salience(self) -> np.ndarray:
    """Harmonic-summation pitch salience [shape=(candidates, frames)]."""
    return self.f["salience"] @ self.mag

  @functools.cached_property
  def pitch(self) -> tuple[np.ndarray, np.ndarray]:
    """Predominant pitch (MIDI) per frame and its salience in [0, 1).

    The salience is ``1 - mean / max`` of the harmonic sums over all candidates: near 0 for
    noise, where every candidate collects about the same, and high for a clear harmonic tone
    (0 for a silent frame).
    """
    best = np.argmax(self.salience, axis=0)
    peak = self.salience[best, np.arange(self.salience.shape[1])]
    salience = np.where(peak > _EPS, 1.0 - _safe_div(self.salience.mean(0), peak), 0.0)
    return _PITCH_MIDI[best], salience

  @functools.cached_property
  def voiced(self) -> np.ndarray:
    return self.active & (self.pitch[1] > 0.6)  # noise scores about 0.3

  @functools.cached_property
  def notes(self) -> np.ndarray:
    """Note pitches (MIDI, rounded) of the voiced frames after a 5-frame median filter."""
    midi, _ = self.pitch
    smooth = scipy.ndimage.median_filter(midi, size=5, mode="nearest")
    return np.round(smooth[self.voiced])

  @functools.cached_property
  def key(self) -> np.ndarray:
    """Correlations of the clip's mean tonal chroma with the 24 key profiles [shape=(24,)]."""
    weights = self.active.astype(np.float32)
    mean = self.tonal_chroma @ weights / max(weights.sum(), 1.0)
    return _key_correlation(mean[:, None])[:, 0]

  @functools.cached_property
  def spectral_shape(self) -> dict[str, np.ndarray]:
    """Frame-wise shape descriptors of the magnitude spectrum (few passes over the STFT)."""
    mag, freqs = self.mag, self.f["freqs"]
    total = np.maximum(self.mag_sum.astype(np.float64), _EPS)
    # Raw moments, the slope and the decrease are all linear in the spectrum: one product.
    m1, m2, m3, m4, slope, decrease = _spectral_weights(self.sr) @ mag
    m1, m2, m3, m4, slope = m1 / total, m2 / total, m3 / total, m4 / total, slope / total
    decrease = _safe_div(decrease, total - mag[0])
    spread = np.sqrt(np.maximum(m2 - m1 ** 2, 0.0))
    safe = np.maximum(spread, 1e-6)
    skew = (m3 - 3 * m1 * m2 + 2 * m1 ** 3) / safe ** 3
    kurt = (m4 - 4 * m1 * m3 + 6 * m1 ** 2 * m2 - 3 * m1 ** 4) / safe ** 4
    cumulative = np.cumsum(mag, axis=0)
    roll85 = freqs[np.argmax(cumulative >= 0.85 * cumulative[-1], axis=0)]
    roll95 = freqs[np.argmax(cumulative >= 0.95 * cumulative[-1], axis=0)]
    power = self.power + np.float32(_EPS)
    power_sum = power.sum(0, dtype=np.float64)
    log_power = np.log(power)
    flatness = np.exp(log_power.mean(0, dtype=np.float64)) / (power_sum / power.shape[0])
    # -sum(p log p) with p = P / sum(P), without forming p.
    entropy = (np.log(power_sum) - np.einsum("ft,ft->t", power, log_power) / power_sum)
    unit = mag / total.astype(np.float32)
    flux = np.sqrt(np.sum(np.square(np.diff(unit, axis=1, prepend=unit[:, :1])), axis=0))
    energy = np.einsum("ft,ft->t", mag, mag, dtype=np.float64)
    neighbours = np.einsum("ft,ft->t", mag[1:], mag[:-1], dtype=np.float64)
    irregularity = _safe_div(2 * energy - mag[0] ** 2 - mag[-1] ** 2 - 2 * neighbours, energy)
    silent = self.mag_sum <= _EPS
    return {"centroid": m1 * 1000.0, "spread": spread * 1000.0,
            "skewness": np.where(silent, 0.0, skew), "kurtosis": np.where(silent, 0.0, kurt),
            "rolloff85": roll85, "rolloff95": roll95, "flatness": flatness,
            "entropy": entropy / np.log(power.shape[0]), "slope": slope,
            "decrease": decrease,
            "crest": _safe_div(mag.max(0), total / mag.shape[0]),
            "brightness": mag[freqs >= 1500.0].sum(0) / total, "flux": flux,
            "irregularity": irregularity}

  @functools.cached_property
  def blocks(self) -> dict[str, np.ndarray]:
    """~1 s block means of MFCC and chroma for chord and form analysis."""
    return {"mfcc": _blocks(self.mfcc, _BLOCK), "chroma": _blocks(self.chroma, _BLOCK),
            "loudness": _blocks(self.loudness[None], _BLOCK)[0]}


# ---------------------------------------------------------------------------------------------
# Tone colour.

_MFCC_PARTS = tuple(f"{i:02d}" for i in range(N_MFCC))


@_descriptor("tone_colour", "mfcc", "Mel-frequency cepstral coefficient of the log-mel",
             parts=_MFCC_PARTS, part_descriptions=tuple(f"coefficient {i}" for i in range(20)))
def _mfcc(a: Analysis):
  return a.mfcc


@_descriptor("tone_colour", "mfcc_delta", "Frame-to-frame change of the MFCC",
             ("mean_abs", "std"), parts=_MFCC_PARTS,
             part_descriptions=tuple(f"coefficient {i}" for i in range(20)))
def _mfcc_delta(a: Analysis):
  return np.diff(a.mfcc, axis=1)


_SPECTRAL = (
    ("centroid", "Spectral centroid in Hz (magnitude-weighted mean frequency)"),
    ("spread", "Spectral spread in Hz (magnitude-weighted standard deviation of frequency)"),
    ("skewness", "Spectral skewness (third standardised moment of the magnitude spectrum)"),
    ("kurtosis", "Spectral kurtosis (fourth standardised moment of the magnitude spectrum)"),
    ("rolloff85", "Spectral roll-off: frequency below which 85 % of the magnitude lies"),
    ("rolloff95", "Spectral roll-off: frequency below which 95 % of the magnitude lies"),
    ("flatness", "Spectral flatness (geometric over arithmetic mean of the power spectrum)"),
    ("entropy", "Normalised spectral entropy of the power spectrum"),
    ("slope", "Spectral slope of the normalised magnitude spectrum (per MHz)"),
    ("decrease", "Spectral decrease (MPEG-7: weighted slope from the lowest bin)"),
    ("crest", "Spectral crest factor (peak over mean magnitude)"),
    ("brightness", "Brightness: share of the spectral magnitude above 1500 Hz"),
    ("flux", "Spectral flux: change of the normalised magnitude spectrum from the last frame"),
    ("irregularity", "Spectral irregularity (Jensen): squared bin-to-bin magnitude differences"),
)
for _name, _text in _SPECTRAL:
  _descriptor("tone_colour", f"spectral_{_name}", _text)(
      functools.partial(lambda a, key: a.spectral_shape[key][None], key=_name))


@_descriptor("tone_colour", "spectral_contrast",
             "Spectral contrast (peak-valley difference in dB) of an octave sub-band",
             parts=tuple(str(i) for i in range(7)),
             part_descriptions=("band 0-200 Hz", "band 200-400 Hz", "band 400-800 Hz",
                                "band 800-1600 Hz", "band 1.6-3.2 kHz", "band 3.2-6.4 kHz",
                                "band 6.4 kHz-Nyquist"))
def _contrast(a: Analysis):
  n_bands = min(6, int(np.ceil(np.log2(a.sr / 400.0))))  # lowest band edges below Nyquist
  contrast = librosa.feature.spectral_contrast(S=a.mag, sr=a.sr, n_fft=N_FFT, n_bands=n_bands)
  if contrast.shape[0] < 7:
    contrast = np.pad(contrast, ((0, 7 - contrast.shape[0]), (0, 0)))
  return contrast


@_descriptor("tone_colour", "zcr", "Zero-crossing rate of the waveform (crossings per sample)")
def _zcr(a: Analysis):
  return a.zcr[None]


@_descriptor("tone_colour", "mel_band_db", "Mean log-mel level of a register",
             SHORT, parts=("low", "lowmid", "highmid", "high"),
             part_descriptions=("mel bands 0-31", "mel bands 32-63", "mel bands 64-95",
                                "mel bands 96-127"))
def _mel_band_db(a: Analysis):
  return _blocks(a.log_mel.T, 32).T


# ---------------------------------------------------------------------------------------------
# Dynamics.


@_descriptor("dynamics", "rms", "Root-mean-square energy of 2048-sample frames")
def _rms(a: Analysis):
  return a.rms[None]


@_descriptor("dynamics", "loudness_db", "Frame level in dB full scale (RMS)")
def _loudness(a: Analysis):
  return a.loudness[None]


@_descriptor("dynamics", "a_weighted_db", "A-weighted frame power in dB (perceived loudness)")
def _a_weighted(a: Analysis):
  weighted = a.f["a_weight"] @ a.power / (0.375 * N_FFT ** 2 / 2)  # Hann-window energy
  return 10.0 * np.log10(np.maximum(weighted, 1e-10))[None]


@_descriptor("dynamics", "level", "Clip-level dynamics", VALUE,
             parts=("peak_db", "rms_db", "crest_db", "range_db", "low_energy_rate",
                    "silence_ratio"),
             part_descriptions=("peak sample level in dBFS", "RMS level of the whole clip in dBFS",
                                "crest factor (peak over RMS) in dB",
                                "dynamic range: 95th minus 5th percentile of the active "
                                "frames' level",
                                "share of frames with less than the mean RMS energy",
                                "share of silent frames (over 60 dB below the loudest)"))
def _level(a: Analysis):
  peak = float(np.abs(a.y).max())
  rms = float(np.sqrt(np.mean(np.square(a.y, dtype=np.float64))))
  active = a.loudness[a.active]
  dyn_range = float(np.percentile(active, 95) - np.percentile(active, 5)) if len(active) else 0.0
  return np.array([20 * np.log10(max(peak, 1e-5)), 20 * np.log10(max(rms, 1e-5)),
                   20 * np.log10(max(peak, 1e-5) / max(rms, 1e-5)), dyn_range,
                   float(np.mean(a.rms < a.rms.mean())), float(np.mean(~a.active))])


# ---------------------------------------------------------------------------------------------
# Rhythm.


@_descriptor("rhythm", "tempo", "Global tempo", VALUE,
             parts=("bpm", "clarity", "beat_strength", "beat_regularity", "beat_rate"),
             part_descriptions=(
                 "beats per minute, from the onset autocorrelation with a 120 BPM prior",
                 "pulse clarity: normalised onset autocorrelation at the beat period",
                 "mean onset strength on tracked beats over the mean onset strength",
                 "coefficient of variation of the inter-beat intervals",
                 "tracked beats per second"))
def _tempo(a: Analysis):
  bpm, clarity = a.tempo
  beats = a.beats
  if len(beats) >= 2:
    strength = _safe_div(a.onset_env[beats].mean(), a.onset_env.mean())
    ibi = np.diff(beats)
    regularity = float(ibi.std() / ibi.mean())
  else:
    strength, regularity = 0.0, 0.0
  return np.array([bpm, clarity, strength, regularity, len(beats) / a.duration])


@_descriptor("rhythm", "onset_strength", "Onset strength (log-mel spectral flux)")
def _onset_strength(a: Analysis):
  return a.onset_env[None]


@_descriptor("rhythm", "percussive_onset_strength",
             "Onset strength of the percussive part (median-filter HPSS)")
def _perc_onsets(a: Analysis):
  perc = librosa.power_to_db(a.hpss[1], ref=1.0, amin=_EPS, top_db=80.0)
  return librosa.onset.onset_strength(S=perc, sr=a.sr, hop_length=HOP)[None]


@_descriptor("rhythm", "events", "Note events", VALUE,
             parts=("onset_rate", "ioi_mean", "ioi_std", "ioi_cv"),
             part_descriptions=("onsets per second", "mean inter-onset interval in seconds",
                                "standard deviation of the inter-onset intervals in seconds",
                                "coefficient of variation of the inter-onset intervals"))
def _events(a: Analysis):
  onsets = a.onsets
  ioi = np.diff(onsets) / a.frame_rate
  if len(ioi) == 0:
    return np.array([len(onsets) / a.duration, 0.0, 0.0, 0.0])
  return np.array([len(onsets) / a.duration, ioi.mean(), ioi.std(), ioi.std() / ioi.mean()])


@_descriptor("rhythm", "tempogram_band",
             "Share of the autocorrelation tempogram in a tempo band", SHORT,
             parts=("30_60", "60_90", "90_120", "120_160", "160_320"),
             part_descriptions=tuple(f"{lo:g}-{hi:g} BPM" for lo, hi in _TEMPO_BANDS))
def _tempogram_bands(a: Analysis):
  tg = np.maximum(a.tempogram[1:], 0.0)
  bpm = librosa.tempo_frequencies(a.tempogram.shape[0], sr=a.sr, hop_length=HOP)[1:]
  bands = np.stack([tg[(bpm >= lo) & (bpm < hi)].sum(0) for lo, hi in _TEMPO_BANDS])
  return _safe_div(bands, bands.sum(0, keepdims=True))


_RATIO_NAMES = ("1/4", "1/3", "1/2", "2/3", "3/4", "1", "4/3", "3/2", "2", "3", "4", "6", "8")
_RATIO_FACTORS = tuple(float(fractions.Fraction(f)) for f in _RATIO_NAMES)


@_descriptor("rhythm", "tempogram_ratio",
             "Tempogram ratio: tempogram at a multiple of the global tempo (Peeters 2005)", SHORT,
             parts=tuple(f.replace("/", "_") for f in _RATIO_NAMES))
def _tempogram_ratio(a: Analysis):
  bpm = a.tempo[0] if np.isfinite(a.tempo[0]) else 120.0
  # The tempogram row of lag L holds 60 * frame_rate / L BPM: interpolate at the target lags.
  lags = 60.0 * a.frame_rate / (bpm * np.array(_RATIO_FACTORS))
  tg = a.tempogram
  lo = np.clip(np.floor(lags).astype(int), 1, tg.shape[0] - 2)
  frac = np.clip(lags - lo, 0.0, 1.0)[:, None]
  ratio = tg[lo] * (1.0 - frac) + tg[lo + 1] * frac
  ratio = np.where((lags >= 1) & (lags <= tg.shape[0] - 1), 1.0, 0.0)[:, None] * ratio
  return _safe_div(ratio, np.abs(ratio).max(0, keepdims=True))


# ---------------------------------------------------------------------------------------------
# Harmony.


@_descriptor("harmony", "chroma", "Chroma energy of a pitch class (frame max-normalised)", SHORT,
             parts=_PITCH_CLASSES)
def _chroma(a: Analysis):
  return a.chroma


@_descriptor("harmony", "chroma_key_relative",
             "Mean chroma relative to the estimated tonic (0 = tonic, 7 = fifth)", ("mean",),
             parts=tuple(f"{i:02d}" for i in range(12)))
def _chroma_relative(a: Analysis):
  tonic = int(np.argmax(a.key)) % 12
  return np.roll(a.chroma, -tonic, axis=0)


@_descriptor("harmony", "tonnetz", "Tonal centroid coordinate (Harte et al. 2006)",
             parts=("fifth_x", "fifth_y", "minor_x", "minor_y", "major_x", "major_y"))
def _tonnetz(a: Analysis):
  return a.tonnetz


@_descriptor("harmony", "key",
             "Key estimate (Krumhansl-Kessler profiles on the mean chroma plus bass chroma)",
             VALUE, parts=("strength", "major_strength", "minor_strength", "mode",
                           "mode_clarity", "clarity"),
             part_descriptions=("correlation with the best key profile",
                                "correlation with the best major key",
                                "correlation with the best minor key",
                                "1 if the best key is major, 0 if minor",
                                "best major minus best minor correlation",
                                "best minus second-best key correlation"))
def _key(a: Analysis):
  corr = a.key
  order = np.sort(corr)
  major, minor = corr[:12].max(), corr[12:].max()
  return np.array([order[-1], major, minor, float(np.argmax(corr) < 12), major - minor,
                   order[-1] - order[-2]])


@_descriptor("harmony", "local_key", "Key estimate over ~4 s windows",
             ("mean", "std", "min", "max"),
             parts=("strength", "mode_clarity", "tonic_agreement"),
             part_descriptions=("best key-profile correlation",
                                "best major minus best minor correlation",
                                "1 where the window's tonic equals the clip's tonic"))
def _local_key(a: Analysis):
  corr = _key_correlation(_blocks(a.tonal_chroma, 4 * _BLOCK))
  tonic = np.argmax(corr, axis=0) % 12
  return np.stack([corr.max(0), corr[:12].max(0) - corr[12:].max(0),
                   (tonic == np.argmax(a.key) % 12).astype(float)])


@_descriptor("harmony", "chords", "Triad sequence of ~0.5 s chroma blocks (template matching)",
             VALUE, parts=("change_rate", "major_ratio", "diversity", "fit"),
             part_descriptions=("chord changes per second", "share of blocks on a major triad",
                                "distinct triads over blocks",
                                "mean cosine similarity with the best triad template"))
def _chords(a: Analysis):
  chroma = _blocks(a.chroma, _BLOCK // 2)
  unit = _safe_div(chroma, np.linalg.norm(chroma, axis=0, keepdims=True))
  fit = _chord_templates() @ unit
  best = np.argmax(fit, axis=0)
  seconds = chroma.shape[1] * (_BLOCK // 2) / a.frame_rate
  return np.array([np.count_nonzero(np.diff(best)) / seconds, np.mean(best < 12),
                   len(np.unique(best)) / len(best), fit.max(0).mean()])


@_descriptor("harmony", "harmonic_change",
             "Harmonic change (distance between successive smoothed tonal centroids)")
def _hcdf(a: Analysis):
  centroid = scipy.ndimage.gaussian_filter1d(a.tonnetz, sigma=4.0, axis=1)
  return np.linalg.norm(np.diff(centroid, axis=1, prepend=centroid[:, :1]), axis=0)[None]


@_descriptor("harmony", "roughness",
             "Sensory dissonance of the 10 strongest spectral peaks (Plomp-Levelt, Sethares)")
def _roughness(a: Analysis):
  freqs, amps, _ = a.peaks
  fi, fj = freqs[:, None], freqs[None, :]
  s = 0.24 / (0.021 * np.minimum(fi, fj) + 19.0)
  df = np.abs(fi - fj)
  d = np.exp(-3.5 * s * df) - np.exp(-5.75 * s * df)
  pair = amps[:, None] * amps[None, :] * d
  return _safe_div(0.5 * pair.sum((0, 1)), np.sum(amps ** 2, axis=0))[None]


@_descriptor("harmony", "chroma_entropy",
             "Entropy of the normalised chroma vector (low = clear tonality)")
def _chroma_entropy(a: Analysis):
  p = _safe_div(a.chroma, a.chroma.sum(0, keepdims=True)) + _EPS
  return (-np.sum(p * np.log(p), axis=0) / np.log(12.0))[None]


# ---------------------------------------------------------------------------------------------
# Melody.


@_descriptor("melody", "pitch", "Predominant pitch (MIDI) of voiced frames (harmonic summation)")
def _pitch(a: Analysis):
  return a.pitch[0][a.voiced][None]


@_descriptor("melody", "pitch_salience",
             "Pitch salience: harmonic sum of the best pitch over the frame's total magnitude")
def _salience(a: Analysis):
  return a.pitch[1][None]


@_descriptor("melody", "contour", "Melodic contour of the voiced frames", VALUE,
             parts=("voiced_ratio", "range", "note_rate", "step_ratio", "leap_ratio",
                    "rising_ratio"),
             part_descriptions=("share of voiced frames",
                                "pitch range (95th - 5th percentile, semitones)",
                                "pitch changes per second of voiced audio",
                                "share of pitch changes of 1-2 semitones",
                                "share of pitch changes above 5 semitones",
                                "share of rising pitch changes"))
def _contour(a: Analysis):
  notes = a.notes
  voiced_ratio = float(a.voiced.mean())
  if len(notes) < 2:
    return np.array([voiced_ratio, 0.0, 0.0, 0.0, 0.0, 0.0])
  steps = np.diff(notes)
  changes = steps[steps != 0]
  seconds = len(notes) / a.frame_rate
  pitch = a.pitch[0][a.voiced]
  size = np.abs(changes)
  n = max(len(changes), 1)
  return np.array([voiced_ratio, np.percentile(pitch, 95) - np.percentile(pitch, 5),
                   len(changes) / seconds, np.sum(size <= 2) / n, np.sum(size > 5) / n,
                   np.sum(changes > 0) / n])


@_descriptor("melody", "interval", "Size in semitones of the pitch changes between notes")
def _interval(a: Analysis):
  steps = np.abs(np.diff(a.notes))
  return steps[steps != 0][None]


# ---------------------------------------------------------------------------------------------
# Expressivity.


@_descriptor("expressivity", "loudness_change", "Frame-to-frame change of the level in dB")
def _loudness_change(a: Analysis):
  return np.diff(a.loudness)[None]


@_descriptor("expressivity", "articulation", "Articulation of the detected note events", VALUE,
             parts=("attack_slope", "attack_time", "sustain_ratio", "staccato_ratio"),
             part_descriptions=("mean rise in dB per second from 3 frames before an onset to "
                                "the peak after it",
                                "mean time in seconds from an onset to its level peak",
                                "mean share of an inter-onset interval spent within 6 dB of "
                                "its peak",
                                "share of inter-onset intervals whose level drops over 12 dB"))
def _articulation(a: Analysis):
  onsets = a.onsets
  level = a.loudness
  if len(onsets) < 2:
    return np.array([0.0, 0.0, 1.0, 0.0])
  bounds = np.append(onsets, len(level))
  slopes, times, sustain, staccato = [], [], [], []
  for start, stop in zip(bounds[:-1], bounds[1:]):
    segment = level[start:stop]
    peak = int(np.argmax(segment[:8]))
    before = level[max(start - 3, 0)]
    times.append((peak + 1) / a.frame_rate)
    slopes.append((segment[peak] - before) * a.frame_rate / (peak + 3))
    sustain.append(np.mean(segment >= segment.max() - 6.0))
    staccato.append(float(segment.min() < segment.max() - 12.0))
  return np.array([np.mean(slopes), np.mean(times), np.mean(sustain), np.mean(staccato)])


@_descriptor("expressivity", "modulation", "Slow modulations", VALUE,
             parts=("tremolo", "vibrato"),
             part_descriptions=("share of the level contour's modulation spectrum in 4-8 Hz",
                                "share of the voiced pitch contour's modulation spectrum in "
                                "4-8 Hz"))
def _modulation(a: Analysis):
  def band_share(x):
    if len(x) < 16:
      return 0.0
    spectrum = np.abs(np.fft.rfft(x - x.mean())) ** 2
    freqs = np.fft.rfftfreq(len(x), 1.0 / a.frame_rate)
    return float(_safe_div(spectrum[(freqs >= 4) & (freqs <= 8)].sum(), spectrum[1:].sum()))
  return np.array([band_share(a.loudness), band_share(a.pitch[0][a.voiced])])


# ---------------------------------------------------------------------------------------------
# Texture.


@_descriptor("texture", "polyphony", "Spectral peaks within 20 dB of the strongest (50 Hz-5 kHz)")
def _polyphony(a: Analysis):
  return a.peaks[2][None].astype(np.float64)


@_descriptor("texture", "harmonic_ratio",
             "Share of the harmonic part in the mel power (median-filter HPSS)")
def _harmonic_ratio(a: Analysis):
  harmonic, percussive = a.hpss
  h, p = harmonic.sum(0), percussive.sum(0)
  return _safe_div(h, h + p)[None]


@_descriptor("texture", "band_ratio", "Share of the spectral power in a register",
             parts=("low", "lowmid", "highmid", "high"),
             part_descriptions=tuple(f"{lo:g}-{hi:g} Hz" for lo, hi in _BANDS))
def _band_ratio(a: Analysis):
  freqs = a.f["freqs"]
  total = a.power.sum(0)
  return np.stack([_safe_div(a.power[(freqs >= lo) & (freqs < hi)].sum(0), total)
                   for lo, hi in _BANDS])


@_descriptor("texture", "chroma_density", "Pitch classes with over half the strongest's energy")
def _chroma_density(a: Analysis):
  return np.sum(a.chroma > 0.5, axis=0)[None].astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Form.


def _novelty(ssm: np.ndarray, half: int = 4) -> np.ndarray:
  """Foote novelty: a Gaussian-tapered checkerboard kernel slid along the SSM's diagonal."""
  n = ssm.shape[0]
  idx = np.arange(-half, half)
  taper = np.sign(idx + 0.5) * np.exp(-0.5 * ((idx + 0.5) / (0.5 * half)) ** 2)
  kernel = np.outer(taper, taper)
  padded = np.pad(ssm, half, mode="edge")
  return np.array([np.sum(kernel * padded[i:i + 2 * half, i:i + 2 * half]) for i in range(n)])


@_descriptor("form", "structure", "Musical form from ~1 s blocks", VALUE,
             parts=("timbre_novelty_mean", "timbre_novelty_max", "harmony_novelty_mean",
                    "harmony_novelty_max", "boundary_rate", "timbre_repetition",
                    "harmony_repetition", "homogeneity", "loudness_trend",
                    "brightness_trend", "half_contrast"),
             part_descriptions=(
                 "mean Foote novelty of the MFCC self-similarity",
                 "maximum Foote novelty of the MFCC self-similarity",
                 "mean Foote novelty of the chroma self-similarity",
                 "maximum Foote novelty of the chroma self-similarity",
                 "novelty peaks (section boundaries) per minute",
                 "strongest mean MFCC similarity along a diagonal at lags of 4 s or more",
                 "strongest mean chroma similarity along a diagonal at lags of 4 s or more",
                 "mean MFCC self-similarity",
                 "slope of the level over time in dB per minute",
                 "slope of the spectral centroid over time in Hz per minute",
                 "MFCC distance between the first and second half (z-scored)"))
def _structure(a: Analysis):
  mfcc = _zscore(a.blocks["mfcc"], 1)
  chroma = a.blocks["chroma"]
  n = mfcc.shape[1]
  unit_m = _safe_div(mfcc, np.linalg.norm(mfcc, axis=0, keepdims=True))
  unit_c = _safe_div(chroma, np.linalg.norm(chroma, axis=0, keepdims=True))
  ssm_m, ssm_c = unit_m.T @ unit_m, unit_c.T @ unit_c
  nov_m, nov_c = _novelty(ssm_m), _novelty(ssm_c)
  peaks, _ = scipy.signal.find_peaks(nov_m, prominence=0.1 * max(np.ptp(nov_m), _EPS))
  minutes = a.duration / 60.0

  def repetition(ssm):
    lags = range(4, n - 1)
    return max((np.mean(np.diagonal(ssm, lag)) for lag in lags), default=0.0)

  t = np.arange(n) / max(n, 1) * minutes
  def trend(x):
    return float(np.polyfit(t, x, 1)[0]) if n >= 2 else 0.0
  centroid = _blocks(a.spectral_shape["centroid"][None], _BLOCK)[0]
  half = max(n // 2, 1)
  contrast = (float(np.linalg.norm(mfcc[:, :half].mean(1) - mfcc[:, half:].mean(1)))
              if n >= 2 else 0.0)
  return np.array([nov_m.mean(), nov_m.max(), nov_c.mean(), nov_c.max(), len(peaks) / minutes,
                   repetition(ssm_m), repetition(ssm_c), ssm_m.mean(),
                   trend(a.blocks["loudness"]), trend(centroid), contrast])


# ---------------------------------------------------------------------------------------------
# Public interface.


def version() -> str:
  return VERSION


def config(*, sample_rate: int = 16000) -> dict:
  """What determines this backend's output (part of the feature cache key)."""
  return {"backend": "builtin", "version": VERSION, "sample_rate": sample_rate,
          "librosa": librosa_version, "n_fft": N_FFT, "hop_length": HOP,
          "n_features": len(_columns())}


def descriptors() -> tuple[Descriptor, ...]:
  """The registered descriptors, in column order."""
  return tuple(_REGISTRY)


@functools.lru_cache(maxsize=1)
def _columns() -> tuple[tuple[str, str, str], ...]:
  return tuple((name, d.dimension, text) for d in _REGISTRY for name, text in d.columns())


def feature_names(*, sample_rate: int = 16000) -> list[str]:
  """Column names ``dimension.descriptor.statistic`` (the same at every sample rate)."""
  del sample_rate
  return [name for name, _, _ in _columns()]


def manifest(*, sample_rate: int = 16000) -> list[tuple[str, str, str]]:
  """``(name, dimension, description)`` for every column, in column order."""
  del sample_rate
  return list(_columns())


def estimate_key(y: np.ndarray, *, sample_rate: int = 16000) -> tuple[str, str, float]:
  """The clip's key as the builtin features see it.

  Returns:
    ``(tonic, mode, strength)``, e.g. ``("C", "major", 0.91)``: the best-correlated
    Krumhansl-Kessler profile and its correlation with the clip's mean chroma.
  """
  corr = Analysis(y, sample_rate).key
  best = int(np.argmax(corr))
  return _PITCH_CLASSES[best % 12], "major" if best < 12 else "minor", float(corr[best])


def estimate_tempo(y: np.ndarray, *, sample_rate: int = 16000) -> float:
  """The clip's global tempo in BPM as the builtin features see it (NaN without onsets)."""
  return Analysis(y, sample_rate).tempo[0]


def extract(y: np.ndarray, *, sample_rate: int = 16000) -> np.ndarray:
  """Extracts all built-in features of one clip.

  Args:
    y: mono waveform [shape=(samples,)].
    sample_rate: sampling rate of ``y`` in Hz.

  Returns:
    [shape=(n_features,)] float32, in :func:`feature_names` order; NaN where a descriptor is
    undefined (e.g. the pitch statistics of a clip without voiced frames).
  """
  analysis = Analysis(y, sample_rate)
  values = []
  for d in _REGISTRY:
    raw = np.asarray(d.compute(analysis), np.float64)
    n_parts = max(len(d.parts), 1)
    if d.stats == VALUE:
      values.append(raw.reshape(n_parts))
    else:
      values.append(summarize(raw.reshape(n_parts, -1), d.stats).reshape(-1))
  return np.concatenate(values).astype(np.float32)
