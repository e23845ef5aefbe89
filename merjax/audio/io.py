"""Audio decoding exactly as ``librosa.load(path, sr=16000)`` does it, with clear errors.

One decoder, libsndfile (through soundfile; version >= 1.1 reads MP3, WAV, FLAC, Ogg and
AIFF), and nothing else: unlike librosa, merjax never falls back to audioread, whose backends
(ffmpeg, GStreamer, ...) depend on what else the machine has installed and would accept or
decode a damaged file differently there. So a file gives the same samples, or the same error,
on every machine with the same libsndfile; :func:`decoder_info` names it, and prepared stores
record it. Channels are averaged to mono and the signal is resampled with soxr's high-quality
mode (librosa's default ``res_type="soxr_hq"``), one block of frames at a time through soxr's
streaming resampler (the same samples as resampling the whole signal at once), then cut to the
exact length ``ceil(n * target / source)`` that librosa returns. On valid files the result is
bit-identical to ``librosa.load``. Unlike librosa, empty, corrupt, truncated and unsupported
files raise :class:`merjax.errors.MerjaxError` naming the file and the reason instead of
returning short or silent audio.

References:
  McFee et al., librosa 0.11.0, ``librosa.core.audio.load`` and ``librosa.resample``.
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import re
import struct
from typing import BinaryIO, TypeAlias

import numpy as np

from merjax.errors import MerjaxError

# Extensions treated as audio when scanning folders (what libsndfile decodes).
AUDIO_EXTENSIONS: tuple[str, ...] = (".mp3", ".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff",
                                     ".au")
# A decode shorter than the length the file declares by more than this fraction and this many
# seconds is reported as truncated (MP3 lengths without a Xing/LAME header are estimates).
_TRUNCATION_TOLERANCE = (0.02, 0.5)
# Native frames decoded at a time (6 s at 44.1 kHz, 2 MiB of float32 stereo).
_BLOCK_FRAMES = 2**18

Source: TypeAlias = str | os.PathLike | BinaryIO


@dataclasses.dataclass(frozen=True)
class DecodedClip:
  """One clip at the target rate and length.

  Attributes:
    waveform: mono float32 samples [shape=(clip_samples,)], zero-padded or cropped at the end.
    duration_seconds: true duration of the decoded audio before padding or cropping.
    source_rate: sampling rate of the file.
  """

  waveform: np.ndarray
  duration_seconds: float
  source_rate: int


def _describe(source: Source, name: str | None) -> str:
  if name is not None:
    return name
  if isinstance(source, (str, os.PathLike)):
    return os.fspath(source)
  return str(getattr(source, "name", "<audio stream>"))


def _check_not_empty(source: Source, label: str) -> None:
  if isinstance(source, (str, os.PathLike)):
    if not os.path.exists(source):
      raise MerjaxError(f"{label}: no such file")
    if not os.path.isfile(source):
      raise MerjaxError(f"{label}: not a regular file")
    size = os.path.getsize(source)
  else:
    position = source.tell()
    size = source.seek(0, io.SEEK_END) - position
    source.seek(position)
  if size == 0:
    raise MerjaxError(f"{label}: empty file (0 bytes)")


def _wav_declared_frames(head: bytes) -> int | None:
  """Frames promised by a RIFF/WAVE header's ``data`` chunk (libsndfile silently shortens it)."""
  if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
    return None
  fmt = "<I" if head[:4] == b"RIFF" else ">I"
  block_align, pos = None, 12
  while pos + 8 <= len(head):
    chunk, size = head[pos:pos + 4], struct.unpack(fmt, head[pos + 4:pos + 8])[0]
    if chunk == b"fmt " and pos + 22 <= len(head):
      block_align = struct.unpack(fmt[0] + "H", head[pos + 20:pos + 22])[0]
    if chunk == b"data":
      # 0 and 0xFFFFFFFF mean "unknown size" (streamed or RF64-style headers).
      if not block_align or size in (0, 0xFFFFFFFF):
        return None
      return size // block_align
    pos += 8 + size + (size & 1)
  return None


def _head(source: Source, size: int = 4096) -> bytes:
  if isinstance(source, (str, os.PathLike)):
    with open(source, "rb") as f:
      return f.read(size)
  source.seek(0)
  return source.read(size)


def _read_soundfile(source: Source, *, sample_rate: int) -> tuple[np.ndarray, int, int, int]:
  """librosa's ``__soundfile_load``, ``to_mono`` and ``resample``, one block at a time.

  Blocks of native frames are averaged to mono and fed to a streaming soxr resampler, whose
  output is bit-identical to resampling the whole signal at once; so the whole multichannel
  signal at the native rate (100 MB for a 5-minute 44.1 kHz stereo song) is never held.

  Returns:
    ``(mono samples at sample_rate, native rate, frames decoded, frames the file declares)``.
  """
  import soundfile as sf
  import soxr

  with sf.SoundFile(source) as sf_desc:
    declared, native = sf_desc.frames, sf_desc.samplerate
    resampler = (None if native == sample_rate else
                 soxr.ResampleStream(native, sample_rate, 1, dtype="float32", quality="soxr_hq"))
    parts, frames = [], 0
    # Not SoundFile.blocks: it yields the declared length even when the data ends sooner.
    while len(block := sf_desc.read(_BLOCK_FRAMES, dtype=np.float32, always_2d=True)):
      if not np.all(np.isfinite(block)):
        return np.zeros(0, np.float32), native, -1, declared
      frames += len(block)
      mono = to_mono(block.T) if block.shape[1] > 1 else block[:, 0].copy()
      parts.append(mono if resampler is None else resampler.resample_chunk(mono))
    if resampler is not None:
      parts.append(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
  return (np.concatenate(parts) if parts else np.zeros(0, np.float32)), native, frames, declared


def _soundfile_reason(error: Exception) -> str:
  # "Error opening '/path': reason." or "Error opening <_io.BytesIO object at 0x..>: reason."
  reason = re.sub(r"^Error opening (?:'.*?'|<.*?>): ", "", str(error)).strip().rstrip(".")
  # libsndfile says this for any byte stream it cannot identify, even an existing file.
  if "does not exist or is not a regular file" in reason:
    return "format not recognised"
  return reason[:1].lower() + reason[1:] if reason else type(error).__name__


def decoder_info() -> dict[str, str]:
  """The decoder and resampler that :func:`decode` uses, with their versions.

  Returns:
    ``{"decoder": "libsndfile 1.2.2 (soundfile 0.14.0)", "resampler": "soxr 1.1.0 (soxr_hq)"}``
    for example; prepared stores keep it in their metadata.
  """
  import soundfile as sf
  import soxr

  return {"decoder": f"libsndfile {sf.__libsndfile_version__} (soundfile {sf.__version__})",
          "resampler": f"soxr {soxr.__version__} (soxr_hq)"}


def _raw_decode(source: Source, label: str, sample_rate: int) -> tuple[np.ndarray, int]:
  import soundfile as sf

  try:
    y, sr_native, n, declared = _read_soundfile(source, sample_rate=sample_rate)
  except sf.SoundFileError as sf_error:
    if label.lower().endswith(".mp3") and "MP3" not in sf.available_formats():
      raise MerjaxError(f"{label}: cannot decode MP3 with libsndfile {sf.__libsndfile_version__} "
                        f"(MP3 needs libsndfile >= 1.1: pip install 'soundfile>=0.12.1')"
                        ) from None
    raise MerjaxError(f"{label}: cannot decode: the file is corrupt or not a supported audio "
                      f"format (libsndfile: {_soundfile_reason(sf_error)})") from None
  if n < 0:
    raise MerjaxError(f"{label}: decoded audio contains NaN or infinite samples")
  # libsndfile shortens a truncated WAV's declared length itself, so read the header too.
  declared = max(declared, _wav_declared_frames(_head(source)) or 0)
  fraction, seconds = _TRUNCATION_TOLERANCE
  if declared > 0 and declared - n > max(fraction * declared, seconds * sr_native):
    raise MerjaxError(
        f"{label}: truncated file: decoded {n} of the {declared} samples its header declares "
        f"({n / sr_native:.2f} s of {declared / sr_native:.2f} s)")
  if n == 0:
    raise MerjaxError(f"{label}: contains no audio samples")
  if sr_native != sample_rate:  # librosa.resample(fix=True)
    y = fix_length(y, size=int(math.ceil(n * float(sample_rate) / sr_native)))
  return y, int(sr_native)


def decode(source: Source, *, sample_rate: int = 16000, name: str | None = None
           ) -> tuple[np.ndarray, int]:
  """Decodes a file to mono float32 at ``sample_rate``, as ``librosa.load(source, sr=...)``.

  Args:
    source: a path, or a binary file object positioned at the start of the file.
    sample_rate: target sampling rate in Hz.
    name: how errors refer to the file (defaults to the path or the file object's ``name``).

  Returns:
    ``(waveform, source_rate)``: samples [shape=(ceil(n * sample_rate / source_rate),)] and the
    file's own rate.

  Raises:
    MerjaxError: the file is missing, empty, corrupt, truncated or not a supported format.
  """
  label = _describe(source, name)
  _check_not_empty(source, label)
  y, sr_native = _raw_decode(source, label, sample_rate)
  return np.asarray(y, dtype=np.float32), sr_native


def to_mono(channels: np.ndarray) -> np.ndarray:
  """Averages channels exactly as ``librosa.to_mono`` (``np.mean`` over the channel axis).

  Bit-identical to it (a float32 sum from +0 in channel order, divided by the count) but about
  10 times faster on decoded audio, whose channels are interleaved: ``np.mean`` reduces the
  2-sample inner axis one output sample at a time (0.26 s of CPU for a 4-minute stereo song,
  four times the cost of resampling it), whereas this adds whole channels.

  Args:
    channels: float32 samples [shape=(channels, n)], possibly a transposed (interleaved) view.

  Returns:
    float32 mono samples [shape=(n,)].
  """
  mono = channels[0] + np.float32(0.0)  # a copy; -0.0 becomes +0.0 as in np.mean's sum
  for channel in channels[1:]:
    mono += channel
  return np.true_divide(mono, np.intp(len(channels)), out=mono, casting="unsafe")


def fix_length(waveform: np.ndarray, *, size: int) -> np.ndarray:
  """Crops or zero-pads the last axis to ``size`` samples (``librosa.util.fix_length``)."""
  n = waveform.shape[-1]
  if n > size:
    return waveform[..., :size]
  if n < size:
    pad = [(0, 0)] * (waveform.ndim - 1) + [(0, size - n)]
    return np.pad(waveform, pad)
  return waveform


def load_audio(source: Source, *, sample_rate: int = 16000, clip_seconds: float = 30.0,
               name: str | None = None) -> DecodedClip:
  """Decodes a file and fixes it to ``clip_seconds`` (crop or zero-pad at the end).

  Args:
    source: a path, or a binary file object positioned at the start of the file.
    sample_rate: target sampling rate in Hz.
    clip_seconds: clip length; ``round(clip_seconds * sample_rate)`` samples.
    name: how errors refer to the file.

  Returns:
    A :class:`DecodedClip` whose waveform equals ``librosa.load(source, sr=sample_rate)[0]``
    cropped or zero-padded to the clip length.

  Raises:
    MerjaxError: the file is missing, empty, corrupt, truncated or not a supported format.
  """
  y, sr_native = decode(source, sample_rate=sample_rate, name=name)
  size = int(round(clip_seconds * sample_rate))
  return DecodedClip(waveform=fix_length(y, size=size),
                     duration_seconds=y.shape[-1] / sample_rate, source_rate=sr_native)


def to_pcm16(waveform: np.ndarray) -> np.ndarray:
  """Float samples in [-1, 1] to int16 (scale 32768, rounded, clipped): how stores keep audio."""
  return np.clip(np.round(np.asarray(waveform, np.float32) * 32768.0), -32768, 32767
                 ).astype(np.int16)


def from_pcm16(pcm: np.ndarray) -> np.ndarray:
  """int16 samples back to float32 (``x / 32768``, librosa's ``buf_to_float`` scale)."""
  return np.asarray(pcm).astype(np.float32) * np.float32(1.0 / 32768.0)
