"""merjax.audio.io: decoding equals librosa.load(sr=16000); bad files fail with clear errors."""

import io
import warnings

import librosa
import numpy as np
import pytest
from _fixtures import write_clip

from merjax.audio.io import decode, from_pcm16, load_audio, to_pcm16
from merjax.errors import MerjaxError


def _librosa(path, sr=16000):
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return librosa.load(path, sr=sr)[0]


@pytest.mark.parametrize("ext", [".mp3", ".wav", ".flac", ".ogg"])
@pytest.mark.parametrize("rate,channels", [(44100, 2), (48000, 1), (16000, 2), (22050, 1)])
def test_decode_equals_librosa_load(tmp_path, ext, rate, channels):
  path = write_clip(str(tmp_path / f"clip{ext}"), seconds=1.3, sample_rate=rate,
                    channels=channels, seed=rate + channels)
  ours, source_rate = decode(path, sample_rate=16000)
  reference = _librosa(path)
  assert source_rate == rate
  assert ours.dtype == np.float32 and ours.shape == reference.shape
  np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-7)


def test_decode_from_file_object_equals_path(tmp_path):
  path = write_clip(str(tmp_path / "a.mp3"), seconds=1.0, sample_rate=44100, channels=2)
  with open(path, "rb") as f:
    stream = io.BytesIO(f.read())
  from_stream, _ = decode(stream, name="a.mp3")
  np.testing.assert_array_equal(from_stream, decode(path)[0])


def test_load_audio_crops_and_pads_and_keeps_true_duration(tmp_path):
  path = write_clip(str(tmp_path / "a.wav"), seconds=1.5, sample_rate=48000, channels=2)
  full = _librosa(path)
  short = load_audio(path, clip_seconds=1.0)
  assert short.waveform.shape == (16000,) and short.source_rate == 48000
  assert short.duration_seconds == pytest.approx(1.5)
  np.testing.assert_array_equal(short.waveform, full[:16000])
  long = load_audio(path, clip_seconds=2.0)
  assert long.waveform.shape == (32000,) and long.duration_seconds == pytest.approx(1.5)
  np.testing.assert_array_equal(long.waveform[:len(full)], full)
  assert not np.any(long.waveform[len(full):])


def _mp3(tmp_path, name="good.mp3"):
  return write_clip(str(tmp_path / name), seconds=1.5, sample_rate=44100, channels=2)


def test_empty_file(tmp_path):
  path = tmp_path / "empty.mp3"
  path.write_bytes(b"")
  with pytest.raises(MerjaxError, match=r"empty\.mp3: empty file"):
    load_audio(path)


def test_missing_file(tmp_path):
  with pytest.raises(MerjaxError, match=r"nope\.mp3: no such file"):
    load_audio(tmp_path / "nope.mp3")


def test_corrupt_mp3(tmp_path):
  data = bytearray(open(_mp3(tmp_path), "rb").read())
  rng = np.random.default_rng(0)
  start = len(data) // 4
  data[start:start + 2000] = rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
  path = tmp_path / "corrupt.mp3"
  path.write_bytes(bytes(data))
  with pytest.raises(MerjaxError, match=r"corrupt\.mp3: cannot decode"):
    load_audio(path)


def test_garbage_is_unsupported(tmp_path):
  path = tmp_path / "notes.mp3"
  path.write_text("these are not audio samples\n" * 50)
  with pytest.raises(MerjaxError, match=r"notes\.mp3: cannot decode.*format not recognised"):
    load_audio(path)


@pytest.mark.parametrize("ext", [".mp3", ".wav"])
def test_truncated_file(tmp_path, ext):
  good = write_clip(str(tmp_path / f"good{ext}"), seconds=1.5, sample_rate=44100, channels=2)
  data = open(good, "rb").read()
  path = tmp_path / f"cut{ext}"
  path.write_bytes(data[:len(data) // 2])
  with pytest.raises(MerjaxError, match=rf"cut\{ext}: truncated file"):
    load_audio(path)


def test_pcm16_round_trip():
  x = np.linspace(-1, 1, 10001, dtype=np.float32)
  pcm = to_pcm16(x)
  assert pcm.dtype == np.int16 and pcm.min() == -32768 and pcm.max() == 32767
  back = from_pcm16(pcm)
  assert back.dtype == np.float32
  assert np.max(np.abs(back - x)) <= 1 / 32768
  assert np.array_equal(to_pcm16(back[:-1]), pcm[:-1])  # exact away from the clipped +1.0
