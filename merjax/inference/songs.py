"""Which 30 s windows of a song the model sees, and decoding only those.

Segment policies (``--segment``), for a song of ``n`` samples and the model's clip of ``c``:

* ``first``: one window at 0 s.
* ``middle``: one window centred in the song, starting at ``(n - c) // 2``.
* ``windows`` (default): ``k = min(max_windows, 1 + ceil((n - c) / hop))`` windows whose
  starts are spread evenly from 0 to ``n - c`` (rounded to samples). Consecutive windows are
  at most ``hop`` apart, so the first and the last window touch the song's two ends and
  nothing between them is skipped until the cap is reached; a longer song gets ``max_windows``
  windows spread over all of it.

A song shorter than the clip gets one window at 0 s, zero-padded at the end (``padded``).

Decoding: when the chosen windows cover less than half of a file that libsndfile can seek
(WAV, FLAC, OGG, AIFF, AU), only those windows (plus a short margin for the resampler) are
read, starting on a native frame that falls on a target sample: the same samples as decoding
the whole file, to float rounding. Otherwise the whole file is decoded with
:func:`merjax.audio.io.decode`, exactly as ``librosa.load`` does it, and the windows are cut
from it. This module does not import JAX: it runs in the decoding worker processes.
"""

from __future__ import annotations

import dataclasses
import math
import os

import numpy as np

from merjax.audio.io import decode, fix_length, to_mono
from merjax.errors import MerjaxError

SEGMENTS = ("first", "middle", "windows")
DEFAULT_MAX_WINDOWS = 10
# Formats whose readers seek to a frame without decoding what comes before it.
_SEEKABLE = {"WAV", "WAVEX", "W64", "RF64", "FLAC", "OGG", "AIFF", "AU"}
_MARGIN_SECONDS = 0.05  # read around each window so the resampler's filter sees real context
# Near-silent: RMS below this (dB relative to full scale) over the decoded windows.
NEAR_SILENT_DBFS = -60.0


def window_starts(*, n_samples: int, clip_samples: int, segment: str, hop_samples: int,
                  max_windows: int = DEFAULT_MAX_WINDOWS) -> list[int]:
  """Start samples of the windows a segment policy takes from a song (see the module doc).

  Args:
    n_samples: the song's length at the model's sampling rate.
    clip_samples: the model's clip length.
    segment: ``first``, ``middle`` or ``windows``.
    hop_samples: the largest distance between consecutive windows (``windows`` only).
    max_windows: the cap on the number of windows (``windows`` only).

  Returns:
    Increasing start samples; ``[0]`` for a song no longer than the clip.
  """
  if segment not in SEGMENTS:
    raise MerjaxError(f"segment must be one of {', '.join(SEGMENTS)}, got {segment!r}")
  if hop_samples < 1 or max_windows < 1:
    raise MerjaxError(f"hop and max_windows must be positive, got {hop_samples}, {max_windows}")
  last = n_samples - clip_samples
  if last <= 0 or segment == "first":
    return [0]
  if segment == "middle":
    return [last // 2]
  count = min(max_windows, 1 + math.ceil(last / hop_samples))
  return [int(s) for s in np.round(np.linspace(0, last, count)).astype(np.int64)]


@dataclasses.dataclass
class SongWindows:
  """The decoded windows of one song (or why it failed), as a worker returns them.

  Attributes:
    path: the file, as given.
    windows: float32 [shape=(k, clip_samples)], zero-padded at the end when the song is short.
    starts: the windows' start samples [shape=(k,)].
    duration_seconds: the song's length.
    padded: the song is shorter than one clip.
    peak: largest absolute sample of the decoded windows.
    rms_dbfs: RMS level of the decoded windows in dB full scale (``-inf`` for silence).
    features: raw handcrafted features per window [shape=(k, n_features)], or None.
    error: the one-line reason the song could not be read; the other fields are then empty.
  """

  path: str
  windows: np.ndarray | None = None
  starts: list[int] = dataclasses.field(default_factory=list)
  duration_seconds: float | None = None
  padded: bool = False
  peak: float = 0.0
  rms_dbfs: float = -math.inf
  features: np.ndarray | None = None
  error: str | None = None


def _seekable_info(path: str):
  import soundfile as sf
  try:
    info = sf.info(path)
  except Exception:  # unreadable here: the full decoder gives the precise reason
    return None
  return info if info.format in _SEEKABLE and info.frames > 0 else None


def _read_span(path: str, *, start: int, stop: int, sample_rate: int, info) -> np.ndarray:
  """Samples ``[start, stop)`` at ``sample_rate``, decoding only the matching native frames."""
  import soundfile as sf
  import soxr

  native = info.samplerate
  margin = int(round(_MARGIN_SECONDS * native))
  # Start on a native frame that falls exactly on a target sample, so no fractional shift.
  step = native // math.gcd(native, sample_rate)
  first = max(0, (int(math.floor(start * native / sample_rate)) - margin) // step * step)
  last = min(info.frames, int(math.ceil(stop * native / sample_rate)) + margin)
  try:
    with sf.SoundFile(path) as f:
      f.seek(first)
      y = f.read(frames=last - first, dtype=np.float32, always_2d=True)
  except (sf.SoundFileError, RuntimeError) as error:
    raise MerjaxError(f"{path}: cannot decode: {error}") from None
  if len(y) < last - first:
    raise MerjaxError(f"{path}: truncated file: frames {first}-{last} of the {info.frames} "
                      f"its header declares could not be read")
  y = to_mono(y.T)
  if native != sample_rate:
    y = soxr.resample(y, native, sample_rate, quality="soxr_hq")
  offset = start - first * sample_rate // native
  return fix_length(np.asarray(y[offset:], np.float32), size=stop - start)


def read_windows(path: str, *, sample_rate: int, clip_samples: int, segment: str,
                 hop_samples: int, max_windows: int = DEFAULT_MAX_WINDOWS,
                 features_backend: str | None = None) -> SongWindows:
  """Decodes the windows a segment policy takes from one file; errors become ``error``.

  Args:
    path: an audio file.
    sample_rate: the model's sampling rate.
    clip_samples: the model's clip length in samples.
    segment, hop_samples, max_windows: the policy (see :func:`window_starts`).
    features_backend: also compute each window's handcrafted features with this backend.

  Returns:
    The song's :class:`SongWindows`.
  """
  try:
    return _read_windows(path, sample_rate=sample_rate, clip_samples=clip_samples,
                         segment=segment, hop_samples=hop_samples, max_windows=max_windows,
                         features_backend=features_backend)
  except MerjaxError as error:
    return SongWindows(path=path, error=str(error))
  except Exception as error:  # a decoder's or backend's own failure: this song only
    return SongWindows(path=path, error=f"{path}: {type(error).__name__}: {error}")


def _read_windows(path, *, sample_rate, clip_samples, segment, hop_samples, max_windows,
                  features_backend) -> SongWindows:
  info = _seekable_info(path) if os.path.isfile(path) else None
  full = None
  if info is not None:
    n = int(math.ceil(info.frames * sample_rate / info.samplerate))
  else:
    full, _ = decode(path, sample_rate=sample_rate)
    n = len(full)
  policy = dict(clip_samples=clip_samples, segment=segment, hop_samples=hop_samples,
                max_windows=max_windows)
  starts = window_starts(n_samples=n, **policy)
  # Windows over most of the file (an upper bound on what they touch): decode it all, exactly.
  if info is not None and len(starts) * clip_samples >= n / 2:
    full, _ = decode(path, sample_rate=sample_rate)
    n = len(full)
    starts = window_starts(n_samples=n, **policy)
  windows, real = [], []
  for start in starts:
    stop = min(start + clip_samples, n)
    y = (full[start:stop] if full is not None
         else _read_span(path, start=start, stop=stop, sample_rate=sample_rate, info=info))
    if not np.all(np.isfinite(y)):
      raise MerjaxError(f"{path}: decoded audio contains NaN or infinite samples")
    real.append(y)
    windows.append(fix_length(y, size=clip_samples))
  samples = np.concatenate(real)
  peak = float(np.max(np.abs(samples))) if len(samples) else 0.0
  power = float(np.mean(np.square(samples, dtype=np.float64))) if len(samples) else 0.0
  stacked = np.stack(windows).astype(np.float32, copy=False)
  song = SongWindows(path=path, windows=stacked,
                     starts=starts, duration_seconds=n / sample_rate, padded=n < clip_samples,
                     peak=peak, rms_dbfs=10 * math.log10(power) if power > 0 else -math.inf)
  if features_backend is not None:
    from merjax.features.backends import audio_backend
    backend = audio_backend(features_backend)
    song.features = np.stack([np.asarray(backend.extract(w, sample_rate=sample_rate), np.float32)
                              for w in stacked])
  return song


def silence_warning(song: SongWindows) -> str | None:
  """A warning for silent or near-silent input, or None."""
  if song.peak == 0.0:
    return "silent input (every sample is 0): the prediction is meaningless"
  if song.rms_dbfs < NEAR_SILENT_DBFS:
    return (f"near-silent input (RMS {song.rms_dbfs:.0f} dBFS, below {NEAR_SILENT_DBFS:.0f}): "
            "the prediction is unreliable")
  return None
