"""merjax.audio.augment against librosa 0.11 and numpy/scipy references."""

import functools
import re

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest
import scipy.signal

from merjax import audio
from merjax.audio import augment
from merjax.errors import MerjaxError

SR = 16000
N = 3 * SR


def music_like(seconds, seed):
  """Harmonic tones with slow envelopes (tremolo and decay to a sustain) over faint noise.

  Every partial stays audible, as in sustained music: the phase vocoder's output is then well
  conditioned, so float32 and librosa's float64 agree closely.
  """
  rng = np.random.default_rng(seed)
  t = np.arange(int(seconds * SR)) / SR
  y = np.zeros_like(t)
  for _ in range(5):
    f0 = rng.uniform(90, 900)
    envelope = (0.6 + 0.4 * np.exp(-t / rng.uniform(0.3, 2.0))
                * (1 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.5, 4) * t)))
    for h in range(1, 10):
      if f0 * h < SR / 2:
        y += envelope * rng.uniform(0.2, 1.0) / h * np.sin(2 * np.pi * f0 * h * t
                                                             + rng.uniform(0, 6))
  y = 0.3 * y / np.abs(y).max() + 1e-3 * rng.standard_normal(t.size)
  return y.astype(np.float32)


def relative_error(got, expected):
  return np.linalg.norm(got - expected) / np.linalg.norm(expected)


@pytest.fixture(scope="module")
def clip():
  return music_like(N / SR, 0)


def test_time_stretch_equals_librosa(clip):
  # One rate per clip in a single batch; librosa runs in float64 (its float32 path accumulates the
  # phase in float32 and drifts by ~1e-2 from its own float64 result after 3 s).
  rates = np.array([0.5, 0.8125, 1.0, 1.25, 1.5])
  got = np.asarray(audio.time_stretch(np.tile(clip, (len(rates), 1)), rates))
  for rate, row in zip(rates, got):
    expected = librosa.util.fix_length(
        librosa.effects.time_stretch(clip.astype(np.float64), rate=rate), size=N)
    assert relative_error(row, expected) < 1e-4, rate


def test_time_stretch_under_jit_uses_the_float32_rate(clip):
  rates = np.float32([0.7, 1.3])
  got = np.asarray(jax.jit(audio.time_stretch)(np.tile(clip, (2, 1)), rates))
  for rate, row in zip(rates, got):
    expected = librosa.util.fix_length(
        librosa.effects.time_stretch(clip.astype(np.float64), rate=float(rate)), size=N)
    assert relative_error(row, expected) < 1e-4


def test_pitch_shift_equals_librosa_fft_resampler(clip):
  steps = np.array([-2.0, -1.0, 0.5, 1.0, 2.0])
  got = np.asarray(audio.pitch_shift(np.tile(clip, (len(steps), 1)), steps))
  for n_steps, row in zip(steps, got):
    expected = librosa.effects.pitch_shift(clip.astype(np.float64), sr=SR, n_steps=n_steps,
                                           res_type="fft")
    assert relative_error(row, expected) < 1e-4, n_steps


def test_pitch_shift_beyond_an_octave_down_resamples_to_any_reachable_length(clip):
  # Rates above 2 (more than 12 semitones down) make ceil(round(n / rate) * rate) land on
  # lengths other than n and n + 1 (here n - 1 and n + 2): every reachable length is covered.
  steps = np.array([-13.9, -13.4, 11.5])
  short = clip[:SR]
  plan = augment.stretch_plan(2.0 ** (-steps / 12), n_samples=SR, out_frames=100)
  assert plan.resampled.tolist()[:2] == [SR - 1, SR + 2]
  assert {SR - 1, SR + 2} <= set(augment._resampled_sizes(SR, 2.0 ** (14 / 12)))
  got = np.asarray(audio.pitch_shift(np.tile(short, (len(steps), 1)), steps, max_semitones=14))
  for n_steps, row in zip(steps, got):
    expected = librosa.effects.pitch_shift(short.astype(np.float64), sr=SR, n_steps=n_steps,
                                           res_type="fft")
    assert relative_error(row, expected) < 1e-4, n_steps


def test_pitch_shift_close_to_librosa_default_resampler(clip):
  got = np.asarray(audio.pitch_shift(clip[None], 1.5))[0]
  expected = librosa.effects.pitch_shift(clip, sr=SR, n_steps=1.5)  # soxr_hq, as in the paper
  ours, theirs = (np.asarray(audio.log_mel(y[None]))[0] for y in (got, expected))
  assert np.corrcoef(ours.ravel(), theirs.ravel())[0, 1] > 0.99


def test_traced_plan_matches_librosa_integers():
  # The exact integer arithmetic on float32 rates against librosa's own float64 formulas.
  rates = np.random.default_rng(1).uniform(0.25, 4.0, 3000).astype(np.float32)
  rates = np.concatenate([rates, np.float32([0.5, 0.75, 1.0, 1.5, 2 ** -3, 40.0])])
  for n_samples in (48000, 480000, 1_000_003):
    host = augment.stretch_plan(rates.astype(np.float64), n_samples=n_samples, out_frames=700)
    traced = jax.jit(lambda r, n=n_samples: augment.stretch_plan(r, n_samples=n,
                                                                 out_frames=700))(rates)
    for name in augment.StretchPlan._fields:
      np.testing.assert_array_equal(np.asarray(getattr(traced, name)), getattr(host, name),
                                    err_msg=f"{name} for {n_samples} samples")


def test_nufft_dft_prefix_equals_fft():
  rng = np.random.default_rng(2)
  lengths = np.array([997, 1000, 1024, 1531])  # prime and composite, one static FFT size
  x = rng.standard_normal((4, 1600)).astype(np.float32)
  x[np.arange(1600)[None, :] >= lengths[:, None]] = 0
  dft = jax.jit(augment._dft_prefix, static_argnums=2)
  got = np.asarray(dft(jnp.asarray(x), jnp.asarray(lengths, jnp.int32), 499))
  for row, n, xi in zip(got, lengths, x):
    expected = np.fft.fft(xi[:n].astype(np.float64))[:499]
    assert np.abs(row - expected).max() < 2e-5 * np.abs(expected).max()


def test_fixed_point_trigonometry():
  angles = np.random.default_rng(3).uniform(-np.pi, np.pi, 100000).astype(np.float32)
  radius = np.random.default_rng(4).uniform(1e-6, 10, angles.size).astype(np.float32)
  y, x = radius * np.sin(angles), radius * np.cos(angles)
  fixed = np.asarray(augment._atan2_fixed(jnp.asarray(y), jnp.asarray(x)))
  exact = np.arctan2(y.astype(np.float64), x.astype(np.float64))
  error = np.angle(np.exp(1j * (fixed / augment._PHASE_UNITS - exact)))
  assert np.abs(error).max() < 5e-7
  cos, sin = (np.asarray(v) for v in augment._sincos_fixed(jnp.asarray(fixed)))
  phase = fixed.astype(np.float64) / augment._PHASE_UNITS
  assert np.abs(cos - np.cos(phase)).max() < 3e-7 and np.abs(sin - np.sin(phase)).max() < 3e-7
  assert int(augment._atan2_fixed(jnp.float32(0), jnp.float32(0))) == 0  # numpy's angle(0)


def test_time_shift_and_power_shift():
  x = np.random.default_rng(5).standard_normal((3, 1000)).astype(np.float32)
  got = np.asarray(audio.time_shift(x, np.array([250, -300, 0])))
  np.testing.assert_array_equal(got[0], np.concatenate([np.zeros(250), x[0, :750]]))
  np.testing.assert_array_equal(got[1], np.concatenate([x[1, 300:], np.zeros(300)]))
  np.testing.assert_array_equal(got[2], x[2])
  assert not np.asarray(audio.time_shift(x, 5000)).any()  # shifted entirely out
  gained = np.asarray(audio.power_shift(x, np.array([10.0, -10.0, 0.0])))
  np.testing.assert_allclose(gained, x * 10 ** (np.array([10.0, -10.0, 0.0])[:, None] / 20),
                             rtol=1e-6)
  # A power shift of g dB moves every unfloored log-mel value by g dB (ref=1.0).
  loud, quiet = (np.asarray(audio.log_mel(w)) for w in (gained[:1], x[:1]))
  assert np.median(loud - quiet) == pytest.approx(10.0, abs=1e-3)


@pytest.fixture(scope="module")
def pair():
  """Two short clips: the shape every random-augmentation test shares (one compile each)."""
  return np.stack([music_like(0.5, 10), music_like(0.5, 11)])


BOUNDS = {"time_shift": (-5, 5), "pitch_shift": (-2, 2), "time_stretch": (0.5, 1.5),
          "power_shift": (-10, 10)}


def test_random_augment_ranges_and_determinism(pair):
  key = jax.random.key(0)
  for name, (low, high) in BOUNDS.items():
    out, params = audio.random_augment(key, pair, transform=name)
    assert out.shape == pair.shape and out.dtype == jnp.float32
    assert np.all((low <= np.asarray(params)) & (np.asarray(params) <= high))
    np.testing.assert_array_equal(audio.random_augment(key, pair, transform=name)[1], params)
    if name == "pitch_shift":  # the traced path (exact integer plan) equals the host path
      again, same = jax.jit(functools.partial(audio.random_augment, transform=name))(key, pair)
      np.testing.assert_array_equal(same, params)
      np.testing.assert_allclose(again, out, atol=1e-5)
  _, other = audio.random_augment(jax.random.key(1), pair, transform="power_shift")
  assert not np.allclose(other, audio.random_augment(key, pair, transform="power_shift")[1])
  # With one key per clip, a clip's draw does not depend on its batch.
  keys = jax.random.split(key, 2)
  _, whole = audio.random_augment(keys, pair, transform="time_stretch")
  _, part = audio.random_augment(keys[1:], pair[1:], transform="time_stretch")
  np.testing.assert_array_equal(whole[1:], part)


def test_random_time_shift_matches_its_parameters(pair):
  out, seconds = audio.random_augment(jax.random.key(3), pair, transform="time_shift",
                                      max_shift_seconds=0.2)
  for row, clip, s in zip(np.asarray(out), pair, np.asarray(seconds)):
    np.testing.assert_array_equal(row, np.asarray(audio.time_shift(clip[None], s * SR))[0])


def test_variants_and_augment_then_mel(pair):
  key = jax.random.key(4)
  mels, params = audio.augment_log_mel(key, pair)
  assert set(mels) == {"original", *audio.TRANSFORMS} and set(params) == set(audio.TRANSFORMS)
  for name, (low, high) in BOUNDS.items():
    assert np.all((low <= np.asarray(params[name])) & (np.asarray(params[name]) <= high))
    expected = audio.apply_transform(pair, np.asarray(params[name]), transform=name)
    np.testing.assert_allclose(mels[name], audio.log_mel(expected), atol=2e-3)
  np.testing.assert_allclose(mels["original"], audio.log_mel(pair), atol=1e-4)
  # Each transform draws from its own stream: requesting fewer does not change the draws.
  only, only_params = audio.augment_variants(key, pair, transforms=("power_shift",))
  assert set(only) == {"power_shift"}
  np.testing.assert_array_equal(only_params["power_shift"], params["power_shift"])
  np.testing.assert_allclose(only["power_shift"],
                             audio.power_shift(pair, only_params["power_shift"]), rtol=1e-6)


@pytest.mark.parametrize("kind", ["silence", "clipping"])
def test_extreme_signals_stay_finite(kind, pair):
  if kind == "silence":
    x = np.zeros_like(pair)
  else:
    x = np.clip(4 * np.random.default_rng(7).standard_normal(pair.shape), -1, 1)
  extremes = {"time_shift": [-5.0, 5.0], "pitch_shift": [-2.0, 2.0], "time_stretch": [0.5, 1.5],
              "power_shift": [-10.0, 10.0]}
  for name, params in extremes.items():
    out = np.asarray(audio.apply_transform(x, np.array(params), transform=name))
    assert np.isfinite(out).all(), name
    assert np.isfinite(np.asarray(audio.log_mel(out))).all(), name
    if kind == "silence":
      assert not out.any(), name


def test_bad_inputs_raise():
  x = np.zeros((2, 4000), np.float32)
  with pytest.raises(MerjaxError, match="positive"):
    audio.time_stretch(x, np.array([1.0, 0.0]))
  with pytest.raises(MerjaxError, match="positive"):
    audio.time_stretch(x, -1.0)
  with pytest.raises(MerjaxError, match="shorter than one FFT frame"):
    audio.time_stretch(np.zeros((1, 1000), np.float32), 1.0)
  with pytest.raises(MerjaxError, match="shorter than one FFT frame"):
    audio.pitch_shift(np.zeros((1, 2047), np.float32), 1.0)
  with pytest.raises(MerjaxError, match="max_semitones"):
    audio.pitch_shift(x, 3.0)
  with pytest.raises(MerjaxError, match=r"\(4000,\)"):
    audio.power_shift(np.zeros(4000, np.float32), 1.0)
  with pytest.raises(MerjaxError, match="shape"):
    audio.power_shift(x, np.ones(3))
  with pytest.raises(MerjaxError, match="finite"):
    audio.power_shift(x, np.nan)
  with pytest.raises(MerjaxError, match="unknown augmentation"):
    audio.random_augment(jax.random.key(0), x, transform="reverse")
  with pytest.raises(MerjaxError, match="min_rate"):
    audio.random_augment(jax.random.key(0), x, transform="time_stretch", min_rate=0.0)
  with pytest.raises(MerjaxError, match="keys"):
    audio.random_augment(jax.random.split(jax.random.key(0), 3), x, transform="power_shift")


def test_scipy_resample_convention_matches():
  # The FFT resampler on its own: odd and even lengths, up and down (scipy's unpaired-bin rules).
  rng = np.random.default_rng(8)
  n = 3000
  cases = ((2700, 3000), (2701, 3001), (3300, 3000), (3301, 3001), (3000, 3000))
  x = rng.standard_normal((len(cases), 3400)).astype(np.float32)
  lengths, resampled = (np.array(c, np.int32) for c in zip(*cases))
  x[np.arange(3400)[None, :] >= lengths[:, None]] = 0
  resample = jax.jit(augment._fft_resample, static_argnames=("sizes", "n_samples"))
  got = np.asarray(resample(jnp.asarray(x), lengths, resampled, sizes=(3000, 3001), n_samples=n))
  for row, xi, length, m in zip(got, x, lengths, resampled):
    expected = scipy.signal.resample(xi[:length].astype(np.float64), m)[:n]
    assert relative_error(row, expected) < 1e-5, (length, m)


def test_augment_preview_command(tmp_path, capsys):
  import soundfile

  from merjax.cli import main

  wav = tmp_path / "song.wav"
  soundfile.write(wav, music_like(1.0, 12), SR)
  out = tmp_path / "preview"
  assert main(["augment-preview", str(wav), "--out", str(out), "--seed", "3"]) == 0
  names = sorted(p.name for p in out.iterdir())
  assert names == sorted([f"song_{t}.wav" for t in audio.TRANSFORMS] + ["song_log_mels.png"])
  for t in audio.TRANSFORMS:
    data, rate = soundfile.read(out / f"song_{t}.wav")
    assert rate == SR and data.shape == (SR,) and np.isfinite(data).all()
  assert (out / "song_log_mels.png").stat().st_size > 10_000
  assert str(out / "song_log_mels.png") in capsys.readouterr().out

  garbage = tmp_path / "broken.mp3"
  garbage.write_bytes(b"not audio at all" * 10)
  for argv, message in ((["missing.wav", "--out", str(out)], "no such file"),
                        ([str(wav), "--out", str(wav)], "existing file"),
                        ([str(garbage), "--out", str(out)], "cannot decode")):
    assert main(["augment-preview", *argv]) == 2
    error = capsys.readouterr().err
    assert message in error and error.count("\n") == 1


def test_sinc_resampler_is_close_to_librosa(clip):
  """The accelerator resampler: within 3e-3 (relative L2) of librosa's res_type="fft", and as
  close to librosa's default soxr_hq as the exact FFT path is (documented in augment.py)."""
  steps = np.array([-2.0, 1.5])
  batch = np.tile(clip, (len(steps), 1))
  sinc = np.asarray(audio.pitch_shift(batch, steps, resampler="sinc"))
  exact = np.asarray(audio.pitch_shift(batch, steps, resampler="fft"))
  for got, fft_path, n_steps in zip(sinc, exact, steps):
    reference = librosa.effects.pitch_shift(clip.astype(np.float64), sr=SR, n_steps=n_steps,
                                            res_type="fft")
    assert relative_error(got, reference) < 3e-3
    soxr = librosa.effects.pitch_shift(clip.astype(np.float64), sr=SR, n_steps=n_steps)
    assert relative_error(got, soxr) < 1.05 * relative_error(fft_path, soxr)


def test_resampler_is_checked_and_auto_is_fft_on_cpu(clip):
  with pytest.raises(MerjaxError, match="resampler"):
    audio.pitch_shift(clip[None], 1.0, resampler="linear")
  auto = np.asarray(audio.pitch_shift(clip[None], 1.0, resampler="auto"))
  np.testing.assert_array_equal(auto, np.asarray(audio.pitch_shift(clip[None], 1.0,
                                                                   resampler="fft")))


@pytest.fixture
def accelerator_paths(monkeypatch):
  """The code paths taken off CPU (GPU, TPU), traced here on CPU."""
  from merjax.audio import spectral
  jax.clear_caches()
  monkeypatch.setattr(augment, "_on_cpu", lambda: False)
  monkeypatch.setattr(spectral, "_clips_per_step", lambda batch: None)
  yield
  jax.clear_caches()


def test_accelerator_paths_have_no_loops_nor_odd_ffts_and_equal_the_cpu_path(
    clip, accelerator_paths):
  short = np.tile(clip[:SR], (2, 1))
  keys = jax.random.split(jax.random.key(0), 2)
  jaxpr = str(jax.make_jaxpr(lambda k, w: audio.augment_log_mel(k, w)[0])(keys, short))
  assert "while[" not in jaxpr and "scan[" not in jaxpr and "cond[" not in jaxpr
  lengths = [int(x) for x in re.findall(r"fft_lengths=\((\d+),?\)", jaxpr)]
  assert lengths and all(n % 2 == 0 for n in lengths), lengths
  # cumsum instead of a scan, no materialising loop: the same stretch, bit for bit or nearly
  fast = np.asarray(audio.time_stretch(short, [0.7, 1.3]))
  jax.clear_caches()
  with pytest.MonkeyPatch.context() as m:
    m.setattr(augment, "_on_cpu", lambda: True)
    from merjax.audio import spectral
    m.setattr(spectral, "_clips_per_step", lambda batch: 2)
    reference = np.asarray(audio.time_stretch(short, [0.7, 1.3]))
  np.testing.assert_allclose(fast, reference, atol=1e-6)
