"""The paper's four waveform augmentations in JAX: batched, jittable, equal to librosa.

Louro et al. (docs/method.md) augment every training clip four times, one transform each: a time
shift of up to 5 s, a pitch shift of up to 2 semitones, a time stretch by a rate in [0.5, 1.5] and a
power shift of up to 10 dB. Here each transform takes a batch of clips and one parameter per clip,
keeps the clip length, and runs in float32 under ``jit``/``vmap``, so the augmentation and the mel
spectrogram after it can run on the accelerator in one compiled function.

``time_stretch`` is librosa 0.11's ``effects.time_stretch`` (STFT, ``phase_vocoder``, ISTFT with
``length=round(len / rate)``), then cropped or zero-padded at the end to the clip length.
``pitch_shift`` is ``effects.pitch_shift(..., res_type="fft")``: a time stretch by
``2 ** (-semitones / 12)`` followed by ``scipy.signal.resample`` back to the clip's rate.

Fixed shapes with per-clip rates: the phase vocoder always produces the number of frames the
slowest allowed rate needs; frames past a clip's own count are masked, as are samples past its
stretched length. The integers librosa derives from a rate in float64 (frame positions
``floor(t * rate)``, ``round(len / rate)``, ...) are computed exactly: on the host when the
parameters are concrete (bit-identical to librosa's formulas), and with exact integer arithmetic on
the float32 rate when they are traced. The accumulated phase is kept in 32-bit fixed point, where
wrap-around addition is exact arithmetic modulo 2 pi, so long clips do not lose phase precision.
``scipy.signal.resample`` needs a DFT whose length ``round(len / rate)`` differs per clip: a
non-uniform FFT (one static, twice oversampled FFT plus an 8-tap kernel interpolation, accurate to
float32 rounding). Its inverse has ``ceil(length * rate)`` points, one of a few lengths next to
the clip's, each a direct inverse FFT.

Equality: relative L2 error below 1e-4 against librosa run in float64 (tests). librosa run on
float32 input accumulates the phase in float32 and drifts from its own float64 result (about 1 %
after 3 s, 10-45 % after 30 s); the float64 result is the reference.

References:
  Louro, P. L., et al. (2024). Improving Music Emotion Recognition by Leveraging Handcrafted and
  Learned Features. LAMIR.
  Dutt, A., & Rokhlin, V. (1993). Fast Fourier transforms for nonequispaced data. SIAM J. Sci.
  Comput. 14(6).
  Barnett, A. H., Magland, J., & af Klinteberg, L. (2019). A parallel nonuniform fast Fourier
  transform library based on an "exponential of semicircle" kernel. SIAM J. Sci. Comput. 41(5).
"""

from __future__ import annotations

import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from merjax.audio import spectral
from merjax.config import TRANSFORMS
from merjax.errors import MerjaxError

# Units of each transform's parameter, as returned by random_augment.
PARAMETER_UNITS = {"time_shift": "seconds", "pitch_shift": "semitones", "time_stretch": "rate",
                   "power_shift": "dB"}

# Fixed-point phase: 2**32 units per turn, so int32 wrap-around is addition modulo 2 pi.
_PHASE_UNITS = 2.0 ** 31 / np.pi
# Rates whose float32 mantissa products stay in int32 (see _floor_mul).
_MIN_RATE, _MAX_RATE = 2.0 ** -8, 63.0


# ----------------------------------------------------------------------------- input checks


def _is_traced(x: Any) -> bool:
  return isinstance(x, jax.core.Tracer)


def _check_waveforms(waveforms: Any, *, n_fft: int | None = None) -> jax.Array:
  waveforms = spectral._check_waveforms(waveforms)
  if n_fft is not None and waveforms.shape[1] < n_fft:
    raise MerjaxError(f"clips of {waveforms.shape[1]} samples are shorter than one FFT frame "
                      f"(n_fft={n_fft}); time stretch and pitch shift need at least {n_fft}")
  return waveforms


def _per_clip(values: Any, batch: int, name: str) -> Any:
  """Broadcasts a scalar or ``(batch,)`` parameter; stays numpy (float64) when concrete."""
  if _is_traced(values):
    values = jnp.asarray(values, jnp.float32)
    if values.ndim > 1 or (values.ndim == 1 and values.shape[0] not in (1, batch)):
      raise MerjaxError(f"{name} must be a scalar or have shape ({batch},), got {values.shape}")
    return jnp.broadcast_to(values, (batch,))
  values = np.asarray(values, np.float64)
  if values.ndim > 1 or (values.ndim == 1 and values.shape[0] not in (1, batch)):
    raise MerjaxError(f"{name} must be a scalar or have shape ({batch},), got {values.shape}")
  if not np.all(np.isfinite(values)):
    raise MerjaxError(f"{name} must be finite, got {values}")
  return np.broadcast_to(values, (batch,))


# ----------------------------------------------------------------------------- shift and gain


@jax.jit
def _time_shift(waveforms, shifts):
  n = waveforms.shape[1]
  padded = jnp.pad(waveforms, ((0, 0), (n, n)))
  starts = jnp.clip(n - shifts, 0, 2 * n)
  return jax.vmap(lambda row, start: lax.dynamic_slice(row, (start,), (n,)))(padded, starts)


def time_shift(waveforms: jax.Array, shifts: Any) -> jax.Array:
  """Moves each clip in time by a whole number of samples, zero fill, length kept.

  Args:
    waveforms: ``[shape=(batch, samples)]``.
    shifts: samples per clip, scalar or ``[shape=(batch,)]`` (rounded to integers): positive
      values delay the clip (silence at the start), negative ones advance it (silence at the end).

  Returns:
    ``[shape=(batch, samples)]`` float32.
  """
  waveforms = _check_waveforms(waveforms)
  shifts = _per_clip(shifts, waveforms.shape[0], "shifts")
  return _time_shift(waveforms, jnp.round(jnp.asarray(shifts, jnp.float32)).astype(jnp.int32))


@jax.jit
def _power_shift(waveforms, gains_db):
  return waveforms * (10.0 ** (gains_db / 20.0))[:, None]


def power_shift(waveforms: jax.Array, gains_db: Any) -> jax.Array:
  """Scales each clip's power by ``gains_db`` decibels (amplitude by ``10 ** (gain / 20)``).

  Args:
    waveforms: ``[shape=(batch, samples)]``.
    gains_db: gain per clip in dB, scalar or ``[shape=(batch,)]``. No clipping is applied.

  Returns:
    ``[shape=(batch, samples)]`` float32.
  """
  waveforms = _check_waveforms(waveforms)
  gains = _per_clip(gains_db, waveforms.shape[0], "gains_db")
  return _power_shift(waveforms, jnp.asarray(gains, jnp.float32))


# ----------------------------------------------------------------------------- stretch plans


class StretchPlan(NamedTuple):
  """The integers librosa derives from each clip's rate, ``[shape=(batch, ...)]``.

  Attributes:
    step: ``floor(t * rate)`` for output frame ``t``, the input frame it interpolates from.
    alpha: ``t * rate - step``, the interpolation weight of the next input frame.
    frames: output frames the ISTFT overlaps (librosa's ``n_frames``).
    length: stretched length ``round(samples / rate)``.
    resampled: ``ceil(length * rate)``, the length pitch_shift resamples to.
  """
  step: Any
  alpha: Any
  frames: Any
  length: Any
  resampled: Any


def _plan_host(rates: np.ndarray, *, n_samples: int, out_frames: int, n_fft: int, hop: int,
               sample_rate: float) -> StretchPlan:
  """librosa 0.11's own float64 formulas, for concrete rates (bit-identical integers)."""
  n_in = 1 + n_samples // hop
  steps = np.arange(out_frames, dtype=np.float64)[None, :] * rates[:, None]  # np.arange's values
  n_out = np.array([int(np.ceil(n_in / r)) for r in rates])  # len(np.arange(0, n_in, r))
  length = np.array([int(round(n_samples / r)) for r in rates])
  frames = np.minimum(n_out, np.ceil((length + 2 * (n_fft // 2)) / hop).astype(np.int64))
  ratio = np.array([float(sample_rate) / (float(sample_rate) / r) for r in rates])
  resampled = np.ceil(length * ratio).astype(np.int64)
  return StretchPlan(np.floor(steps).astype(np.int32), np.mod(steps, 1.0).astype(np.float32),
                     frames.astype(np.int32), length.astype(np.int32), resampled.astype(np.int32))


def _floor_mul(n: jax.Array, rate: jax.Array):
  """Exact ``floor(n * rate)`` for int32 ``0 <= n < 2**24`` and float32 ``rate`` in [2**-8, 64).

  The float32 product rounds; this splits the rate's 24-bit mantissa into four 6-bit digits so
  that every partial product fits in int32.

  Returns:
    ``(whole, fraction, inexact)``: the floor, ``n * rate - whole`` as float32 and whether that
    remainder is non-zero.
  """
  bits = lax.bitcast_convert_type(rate, jnp.int32)
  mantissa = (bits & 0x7FFFFF) | 0x800000
  shift = 150 - ((bits >> 23) & 0xFF)  # rate = mantissa * 2**-shift, shift in [18, 31]
  carry: jax.Array | int = 0
  low: jax.Array | int = 0
  for digit in range(4):  # n * mantissa = carry * 2**18 + low, carried 6 bits at a time
    partial = n * ((mantissa >> (6 * digit)) & 63) + carry
    if digit < 3:
      low = low | ((partial & 63) << (6 * digit))
      carry = partial >> 6
    else:
      carry = partial
  k = shift - 18
  whole = carry >> k
  remainder = ((carry & ((1 << k) - 1)) << 18) | low
  fraction = jnp.ldexp(remainder.astype(jnp.float32), -shift)
  return whole, fraction, remainder != 0


def _plan_traced(rates: jax.Array, *, n_samples: int, out_frames: int, n_fft: int,
                 hop: int) -> StretchPlan:
  """The same integers for traced float32 rates, with exact integer arithmetic."""
  rates = jnp.clip(rates, _MIN_RATE, _MAX_RATE)[:, None]
  n_in = 1 + n_samples // hop
  step, alpha, _ = _floor_mul(jnp.arange(out_frames, dtype=jnp.int32)[None, :], rates)

  def reaches(t, target):  # t * rate >= target, exactly
    return _floor_mul(t, rates)[0] >= target

  # n_out = the first t with t * rate >= n_in; the float32 estimate is off by at most one.
  guess = jnp.ceil(n_in / rates).astype(jnp.int32)
  n_out = jnp.where(reaches(guess - 1, n_in), guess - 1, jnp.where(reaches(guess, n_in), guess,
                                                                     guess + 1))

  # length = round-half-even(n_samples / rate): the n with (2n - 1) r <= 2 L <= (2n + 1) r.
  def compare(m):  # sign of m * rate - 2 * n_samples, m odd
    whole, _, inexact = _floor_mul(m, rates)
    return jnp.where(whole > 2 * n_samples, 1,
                     jnp.where(whole < 2 * n_samples, -1, inexact.astype(jnp.int32)))

  def is_round(n):
    below, above = compare(2 * n - 1), compare(2 * n + 1)
    even = n % 2 == 0
    return (((below < 0) | ((below == 0) & even)) & ((above > 0) | ((above == 0) & even)))

  guess = jnp.round(n_samples / rates).astype(jnp.int32)
  length = jnp.where(is_round(guess), guess,
                     jnp.where(is_round(guess - 1), guess - 1, guess + 1))
  frames = jnp.minimum(n_out, (length + 2 * (n_fft // 2) + hop - 1) // hop)
  whole, _, inexact = _floor_mul(length, rates)
  resampled = whole + inexact.astype(jnp.int32)
  return StretchPlan(step, alpha, frames[:, 0], length[:, 0], resampled[:, 0])


def stretch_plan(rates: Any, *, n_samples: int, out_frames: int, n_fft: int = 2048,
                 hop_length: int = 512, sample_rate: float = 16000) -> StretchPlan:
  """Frame positions and lengths librosa's time stretch uses for each clip's rate.

  Args:
    rates: ``[shape=(batch,)]`` stretch rates; numpy/Python values are used in float64 exactly as
      librosa does, traced values as the float32 numbers they are.
    n_samples: clip length in samples.
    out_frames: how many output frames to plan (a fixed size for the whole batch).
    n_fft: FFT size.
    hop_length: hop between frames.
    sample_rate: sampling rate (enters librosa's resampling ratio for pitch shift).

  Returns:
    A :class:`StretchPlan` of numpy arrays (concrete rates) or traced arrays.
  """
  if _is_traced(rates):
    return _plan_traced(jnp.asarray(rates, jnp.float32), n_samples=n_samples,
                        out_frames=out_frames, n_fft=n_fft, hop=hop_length)
  return _plan_host(np.asarray(rates, np.float64), n_samples=n_samples, out_frames=out_frames,
                    n_fft=n_fft, hop=hop_length, sample_rate=sample_rate)


# ----------------------------------------------------------------------------- phase vocoder
# XLA's CPU atan2, cos and sin are scalar code (~10-30 ns per value); these polynomial versions
# fuse into vector loops. Phases are int32 fixed point, 2**32 units per turn.


def _atan2_fixed(y: jax.Array, x: jax.Array) -> jax.Array:
  """``atan2(y, x)`` as int32 fixed-point phase, within about 1e-7 rad (Cephes' atanf).

  ``atan2(0, 0) = 0`` as numpy's ``angle(0)``, which the phase vocoder relies on.
  """
  ax, ay = jnp.abs(x), jnp.abs(y)
  big, small = jnp.maximum(ax, ay), jnp.minimum(ax, ay)
  t = jnp.where(big > 0, small / jnp.where(big > 0, big, 1.0), 0.0)  # in [0, 1]
  reduce = t > 0.41421356  # tan(pi / 8): atan(t) = pi / 4 + atan((t - 1) / (t + 1))
  t = jnp.where(reduce, (t - 1.0) / (t + 1.0), t)
  z = t * t
  angle = ((((8.05374449538e-2 * z - 1.38776856032e-1) * z + 1.99777106478e-1) * z
            - 3.33329491539e-1) * z * t + t)
  angle = jnp.where(reduce, angle + np.float32(np.pi / 4), angle)
  angle = jnp.where(ay > ax, np.float32(np.pi / 2) - angle, angle)
  angle = jnp.where(x < 0, np.float32(np.pi) - angle, angle)
  angle = jnp.where(y < 0, -angle, angle)
  return _to_fixed(angle)


def _to_fixed(angle: jax.Array) -> jax.Array:
  """Radians in [-pi, pi] to int32 fixed-point phase."""
  return jnp.clip(jnp.round(angle * _PHASE_UNITS), -2.0 ** 31, 2.0 ** 31 - 128).astype(jnp.int32)


def _sincos_fixed(phase: jax.Array) -> tuple[jax.Array, jax.Array]:
  """``(cos, sin)`` of int32 fixed-point phases, within about 1e-7.

  The nearest quarter turn comes from the top bits, exactly; the rest is below pi / 4, where
  Taylor polynomials of degree 10 (cos) and 11 (sin) are accurate to float32.
  """
  quarter = (phase + (1 << 29)) >> 30
  x = (phase - (quarter << 30)).astype(jnp.float32) * np.float32(1.0 / _PHASE_UNITS)
  x2 = x * x
  sin = x * (1 + x2 * (-1 / 6 + x2 * (1 / 120 + x2 * (-1 / 5040 + x2 * (1 / 362880)))))
  cos = 1 + x2 * (-0.5 + x2 * (1 / 24 + x2 * (-1 / 720 + x2 * (1 / 40320 + x2 * (-1 / 3628800)))))
  quarter = quarter & 3
  return (jnp.where(quarter == 0, cos, jnp.where(quarter == 1, -sin,
                                                 jnp.where(quarter == 2, -cos, sin))),
          jnp.where(quarter == 0, sin, jnp.where(quarter == 1, cos,
                                                 jnp.where(quarter == 2, -sin, -cos))))


def _gather_frames(array, index):
  """``array[b, index[b, t]]`` for ``[shape=(batch, frames, bins)]`` and ``[shape=(batch, t)]``."""
  return jax.vmap(lambda a, i: a[i])(array, index)


def _on_cpu() -> bool:
  """Whether the computation being traced targets CPU (the default backend)."""
  return jax.default_backend() == "cpu"


def _exclusive_cumsum(values: jax.Array, start: jax.Array) -> jax.Array:
  """``start + sum(values[:, :t])`` along axis 1, int32 wrap-around (exact modulo one turn).

  On CPU a sequential scan: XLA's CPU cumsum over this axis is several times slower. Elsewhere
  ``jnp.cumsum`` (a parallel scan, no loop): int32 addition is associative, so both are exact.
  """
  if not _on_cpu():
    total = jnp.cumsum(values, axis=1) + start[:, None]
    return jnp.concatenate([start[:, None], total[:, :-1]], axis=1)

  def step(total, value):
    return total + value, total

  _, out = lax.scan(step, start, jnp.swapaxes(values, 0, 1))
  return jnp.swapaxes(out, 0, 1)


def _phase_vocoder(waveforms, plan, *, n_fft, hop):
  """librosa.phase_vocoder of the clips' STFT, ``[shape=(batch, out_frames, bins)]`` complex.

  Frames past ``plan.frames`` are zero. The phase of output frame t is the first input frame's
  phase plus the sum of the phase differences between input frames ``step[s]`` and ``step[s]+1``
  for s < t (librosa adds and removes the expected advance, which cancels modulo 2 pi).
  """
  spectrum = jnp.fft.rfft(spectral.frame_signal(waveforms, n_fft=n_fft, hop_length=hop), axis=-1)
  re, im = spectrum.real, spectrum.imag
  # librosa pads two silent frames: magnitude 0 and angle np.angle(0) = 0.
  magnitude = jnp.pad(jnp.sqrt(re * re + im * im), ((0, 0), (0, 1), (0, 0)))
  angle = jnp.pad(_atan2_fixed(im, re), ((0, 0), (0, 1), (0, 0)))
  # Computed once on their own: fused into their three gathers they cost 2x the whole stretch.
  magnitude, angle = _materialize((magnitude, angle), plan.frames)
  advance = angle[:, 1:] - angle[:, :-1]

  step = jnp.clip(plan.step, 0, spectrum.shape[1] - 1)
  phase = _exclusive_cumsum(_gather_frames(advance, step), angle[:, 0])
  cos, sin = _sincos_fixed(phase)
  alpha = plan.alpha[:, :, None]
  mag = (1.0 - alpha) * _gather_frames(magnitude, step) + alpha * _gather_frames(magnitude,
                                                                                 step + 1)
  valid = jnp.arange(step.shape[1])[None, :] < plan.frames[:, None]
  mag = jnp.where(valid[:, :, None], mag, 0.0)
  return lax.complex(mag * cos, mag * sin)


def _istft(spectrum, frames, *, n_samples, length, n_fft, hop):
  """librosa.istft (Hann, center=True) of ``[shape=(batch, out_frames, bins)]``, ``length`` each.

  Overlap-add is a reshape into hop-sized blocks and ``n_fft // hop`` shifted sums; the
  window-square envelope depends only on how many frames each clip has, so it is built from the
  same blocks without a second overlap-add. Samples at or past ``length`` are zero.
  """
  batch, n_frames, _ = spectrum.shape
  k = n_fft // hop
  window = spectral.hann_window(n_fft)
  blocks = (jnp.fft.irfft(spectrum, n=n_fft, axis=-1) * window).reshape(batch, n_frames, k, hop)
  summed = sum(jnp.pad(blocks[:, :, j], ((0, 0), (j, k - 1 - j), (0, 0))) for j in range(k))
  # Block q holds window part j of frame q - j, present if 0 <= q - j < frames.
  block = jnp.arange(n_frames + k - 1)[None, :, None]
  squares = (window.astype(np.float64) ** 2).astype(np.float32).reshape(k, hop)
  envelope = sum(jnp.where((block >= j) & (block - j < frames[:, None, None]), squares[j], 0.0)
                 for j in range(k))
  tiny = np.finfo(np.float32).tiny
  signal = jnp.where(envelope > tiny, summed / jnp.where(envelope > tiny, envelope, 1.0), summed)
  signal = signal.reshape(batch, -1)[:, n_fft // 2:n_fft // 2 + n_samples]
  return jnp.where(jnp.arange(n_samples)[None, :] < length[:, None], signal, 0.0)


def _stretch(waveforms, plan, *, n_samples, n_fft, hop):
  """Time-stretched clips, ``[shape=(batch, n_samples)]``, zero past each stretched length."""
  spectrum = _phase_vocoder(waveforms, plan, n_fft=n_fft, hop=hop)
  return _istft(spectrum, plan.frames, n_samples=n_samples, length=plan.length, n_fft=n_fft,
                hop=hop)


def _stretch_frames(n_samples: int, n_fft: int, hop: int) -> int:
  """Output frames that reach samples below ``n_samples`` (center=True)."""
  return -(-(n_samples + n_fft // 2) // hop)


@functools.partial(jax.jit, static_argnames=("n_fft", "hop"))
def _time_stretch(waveforms, plan, *, n_fft, hop):
  n = waveforms.shape[1]
  return spectral.map_clips(
      lambda w, p: _stretch(w, StretchPlan(*p), n_samples=n, n_fft=n_fft, hop=hop),
      waveforms, tuple(plan))


def _check_hop(n_fft: int, hop_length: int) -> None:
  if n_fft % hop_length or n_fft // hop_length < 1:
    raise MerjaxError(f"hop_length={hop_length} must divide n_fft={n_fft}")


def _check_rates(rates: Any) -> None:
  if not _is_traced(rates) and np.any(np.asarray(rates) <= 0):
    raise MerjaxError(f"stretch rates must be positive, got {np.asarray(rates)}")


def time_stretch(waveforms: jax.Array, rates: Any, *, n_fft: int = 2048,
                 hop_length: int = 512) -> jax.Array:
  """Stretches each clip in time by its rate, then crops or zero-pads it to its old length.

  Equal to ``librosa.util.fix_length(librosa.effects.time_stretch(y, rate=rate), size=len(y))``
  (phase vocoder on a Hann STFT) to a relative L2 error below 1e-4, librosa run in float64 (see
  the module docstring).

  Args:
    waveforms: ``[shape=(batch, samples)]``, at least ``n_fft`` samples.
    rates: speed-up per clip, scalar or ``[shape=(batch,)]``: above 1 is faster (the clip ends in
      silence), below 1 slower (the end is cut). Concrete values are checked; traced values are
      clipped to [2**-8, 63].
    n_fft: FFT size.
    hop_length: hop of the STFT; must divide ``n_fft``.

  Returns:
    ``[shape=(batch, samples)]`` float32.

  Raises:
    MerjaxError: on a rate <= 0, a clip shorter than ``n_fft`` or a bad shape.
  """
  _check_hop(n_fft, hop_length)
  waveforms = _check_waveforms(waveforms, n_fft=n_fft)
  batch, n = waveforms.shape
  rates = _per_clip(rates, batch, "rates")
  _check_rates(rates)
  plan = stretch_plan(rates, n_samples=n, out_frames=_stretch_frames(n, n_fft, hop_length),
                      n_fft=n_fft, hop_length=hop_length)
  return _time_stretch(waveforms, plan, n_fft=n_fft, hop=hop_length)


# ----------------------------------------------------------------------------- pitch shift


@functools.cache
def _smooth_size(n: int) -> int:
  """The smallest 2**a 3**b 5**c >= n with c <= 1 (XLA's CPU FFT is slow on powers of 5)."""
  best = 1 << (n - 1).bit_length()
  for five in (1, 5):
    three = 1
    while five * three < best:
      size = five * three
      while size < n:
        size *= 2
      best = min(best, size)
      three *= 3
  return best


def _mod(values, modulus):
  """``values % modulus`` for int32 ``values`` in [0, 2**31) and ``modulus`` in [2**9, 2**21].

  Vector float division instead of integer division, which CPUs do one element at a time.
  """
  quotient = jnp.floor(values.astype(jnp.float32) / modulus.astype(jnp.float32))
  # Exact: the true rest is small, so int32 wrap-around in the product cancels out.
  rest = values - quotient.astype(jnp.int32) * modulus
  rest = jnp.where(rest < 0, rest + modulus, rest)
  return jnp.where(rest >= modulus, rest - modulus, rest)


# Non-uniform FFT (Dutt & Rokhlin 1993, with Barnett et al.'s exponential-of-semicircle kernel):
# a DFT whose length differs per clip is evaluated from one static, twice-oversampled FFT and an
# 8-tap kernel interpolation, with errors at float32 rounding level.
_WIDTH = 8
_BETA = 2.30 * _WIDTH


def _kernel(z: jax.Array) -> jax.Array:
  """The exponential-of-semicircle kernel on [-width/2, width/2] (grid units)."""
  u = 1.0 - (z * (2.0 / _WIDTH)) ** 2
  return jnp.where(u > 0, jnp.exp(_BETA * (jnp.sqrt(jnp.maximum(u, 0.0)) - 1.0)), 0.0)


@functools.lru_cache(maxsize=8)
def _kernel_transform(modes: int, grid: int) -> np.ndarray:
  """``int kernel(z) cos(2 pi n z / grid) dz`` for ``n <= modes``, float32 (Gauss-Legendre)."""
  nodes, weights = np.polynomial.legendre.leggauss(64)
  z = (nodes + 1) * (_WIDTH / 4)  # [0, width / 2]
  values = np.exp(_BETA * (np.sqrt(1 - (2 * z / _WIDTH) ** 2) - 1)) * weights * (_WIDTH / 4)
  n = np.arange(modes + 1)[:, None]
  return (2 * np.cos(2 * np.pi * n * z[None, :] / grid) @ values).astype(np.float32)


def _grid_positions(count: int, grid: int, n: jax.Array):
  """``j * grid / n`` for ``j < count`` as (floor, fraction), exact: ``[shape=(batch, count)]``.

  Args:
    count: number of positions, below 2**20.
    grid: static grid size, below 2**21.
    n: ``[shape=(batch,)]`` int32 periods in [2**9, 2**20).
  """
  n = n[:, None]
  if not isinstance(grid, int):  # a per-clip numerator (the sinc resampler)
    grid = jnp.asarray(grid, jnp.int32)[:, None]
  j = jnp.arange(count, dtype=jnp.int32)[None, :]
  # j * grid mod n with j = 1024 high + low: every partial product fits in int32.
  remainder = _mod((j >> 10) * ((1024 * grid) % n) + (j & 1023) * (grid % n), n)
  fraction = remainder.astype(jnp.float32) / n.astype(jnp.float32)
  whole = jnp.round(j.astype(jnp.float32) * (grid / n.astype(jnp.float32)) - fraction)
  return whole.astype(jnp.int32), fraction


def _materialize(values: Any, token: jax.Array) -> Any:
  """``values`` (a pytree), computed on their own: XLA cannot fuse across a loop it can't unroll.

  XLA fuses a gather with its elementwise producers and consumers into one scalar loop, which
  made the phase vocoder and the resampler about 2x slower on CPU; ``lax.optimization_barrier``
  did not reliably stop it. ``token`` is any traced int32 array; the loop runs once.
  Off CPU the values pass through: a loop would read its predicate on the host (GPU).
  """
  if not _on_cpu():
    return values
  trips = jnp.minimum(jnp.max(token), 1)

  def body(carry):  # touches the values so that XLA cannot hoist them out of the loop
    i, v = carry
    keep = i < trips
    return i + 1, jax.tree.map(lambda a: jnp.where(keep, a, jnp.zeros_like(a)), v)

  return lax.while_loop(lambda c: c[0] < trips, body, (jnp.int32(0), values))[1]


def _interpolate(padded, whole, fraction):
  """``sum_t grid[whole - w/2 + 1 + t] kernel(fraction + w/2 - 1 - t)`` for each position.

  Args:
    padded: ``[shape=(batch, width + grid + width)]`` complex grid values, extended by ``width``
      values on each side. Build it only by slicing and concatenation (conj of a few values is
      fine): XLA fuses the producer into this gather, and heavier producers make it ~4x slower.
    whole: ``[shape=(batch, points)]`` int32 floor of each position.
    fraction: ``[shape=(batch, points)]`` its fractional part.
  """
  start = whole + (_WIDTH // 2 + 1)  # index of tap 0 in the padded array
  windows = jax.vmap(jax.vmap(lambda v, i: lax.dynamic_slice(v, (i,), (_WIDTH,)),
                              in_axes=(None, 0)))(padded, start)
  taps = fraction[..., None] + (_WIDTH / 2 - 1) - jnp.arange(_WIDTH, dtype=jnp.float32)
  return jnp.sum(windows * _kernel(taps), axis=-1)


def _turns_to_fixed(turns):
  """Turns to int32 fixed-point phase."""
  turns = turns - jnp.round(turns)
  return jnp.clip(jnp.round(turns * 2.0 ** 32), -2.0 ** 31, 2.0 ** 31 - 128).astype(jnp.int32)


def _dft_prefix(x, n, bins):
  """``X[k] = sum_{j < n} x[j] exp(-2 pi i j k / n)`` for ``k < bins``, a per-clip length ``n``.

  Args:
    x: ``[shape=(batch, samples)]`` real, zero from each clip's ``n`` on.
    n: ``[shape=(batch,)]`` int32 DFT length per clip, at most ``samples``.
    bins: how many leading frequencies to return (static), at most ``0.6 * min(n)``.

  Returns:
    ``[shape=(batch, bins)]`` complex64.
  """
  samples = x.shape[1]
  centre = samples // 2  # samples are the NUFFT's modes, centred so |mode| <= samples / 2
  grid = _smooth_size(2 * samples)
  correction = 1.0 / _kernel_transform(max(centre, samples - centre), grid)
  scaled = jnp.concatenate([x[:, centre:] * correction[:samples - centre],
                            jnp.zeros((x.shape[0], grid - samples), x.dtype),
                            x[:, :centre] * correction[centre:0:-1]], axis=1)
  # The grid values F(2 pi l / grid) = rfft(scaled)[l]; x is real, so F(-t) = conj(F(t)).
  half = jnp.fft.rfft(scaled, axis=-1)
  padded = jnp.concatenate([jnp.conj(half[:, _WIDTH:0:-1]), half,
                            jnp.conj(half[:, -2:-2 - _WIDTH:-1])], axis=1)
  # Positions of bins past each clip's n / 2 run off the grid: dynamic_slice clamps them, and
  # the resampler never keeps those bins.
  total = _materialize(_interpolate(padded, *_grid_positions(bins, grid, n)), n)
  # Undo the centring: a factor exp(-2 pi i k centre / n), its turns exact in integers.
  _, turns = _grid_positions(bins, centre, n)
  cos, sin = _sincos_fixed(_turns_to_fixed(turns))
  return total * lax.complex(cos, -sin)


def _inverse_real_dft(spectrum, size, *, sizes, n_samples):
  """``fix_length(numpy.fft.irfft(spectrum, n=size), n_samples)`` for a per-clip ``size``.

  ``size`` takes one of a few static ``sizes`` (pitch shift resamples to within a rate of the
  clip length): each gets one direct inverse FFT and each clip keeps its own, which costs a
  third of one oversampled NUFFT with its 8-tap gathers on CPU.
  ``spectrum`` is ``[shape=(batch, bins)]``, zero above each clip's ``size // 2``.
  """
  def fixed(values):
    values = values[:, :n_samples]
    return jnp.pad(values, ((0, 0), (0, n_samples - values.shape[1])))

  return jnp.select([(size == s)[:, None] for s in sizes[:-1]],
                    [fixed(jnp.fft.irfft(spectrum, n=s, axis=-1)) for s in sizes[:-1]],
                    fixed(jnp.fft.irfft(spectrum, n=sizes[-1], axis=-1)))


def _resampled_spectrum(x, length, resampled, *, sizes):
  """The spectrum ``scipy.signal.resample(x[:length], resampled)`` inverts, per clip.

  Returns:
    ``[shape=(batch, max(sizes) // 2 + 1)]`` complex64, for :func:`_inverse_real_dft`.
  """
  bins = max(sizes) // 2 + 1
  spectrum = _dft_prefix(x, length, bins)
  m = jnp.minimum(length, resampled)[:, None]
  k = jnp.arange(bins)[None, :]
  # scipy: keep bins below m // 2 + 1; an even m's unpaired bin doubles (down) or halves (up).
  unpaired = (m % 2 == 0) & (k == m // 2) & (length != resampled)[:, None]
  factor = jnp.where(unpaired, jnp.where(resampled < length, 2.0, 0.5)[:, None], 1.0)
  factor = jnp.where(k < m // 2 + 1, factor, 0.0)
  scale = (resampled.astype(jnp.float32) / length.astype(jnp.float32))[:, None]
  return spectrum * (factor * scale)


def _fft_resample(x, length, resampled, *, sizes, n_samples):
  """``fix_length(scipy.signal.resample(x[:length], resampled), n_samples)`` per clip.

  ``resampled`` must be one of the static ``sizes`` (see :func:`_resampled_sizes`).
  """
  return _inverse_real_dft(_resampled_spectrum(x, length, resampled, sizes=sizes), resampled,
                           sizes=sizes, n_samples=n_samples)


# Windowed-sinc resampler for accelerators: a fixed number of taps per output sample, gathered
# at exact positions; no FFT of an odd or per-clip length and no loop. Measured against librosa
# 0.11 (float64) on 3 s music-like clips, shifts -2, 0.4 and 1.5 semitones (tests/test_augment.py
# checks the first two numbers): relative L2 difference 1.4-1.6e-3 to res_type="fft" (which the
# exact path meets to 1e-6); to the default soxr_hq it is the same as the exact path's (3e-2 to
# 2e-1, mostly soxr's own filter phase). Log-mels: median |dB| difference 0; the 99th percentile
# is 3-7 dB to res_type="fft" and 1-6 dB to soxr_hq (soxr_hq vs fft: 4-14 dB), all in the top
# mel bands, near 8 kHz, where the clips hold little energy and the filters' roll-offs differ.
RESAMPLERS = ("auto", "fft", "sinc")
_SINC_ZEROS = 32      # zero crossings of the kernel on each side, at the cutoff
_SINC_BETA = 9.0      # exponential-of-semicircle window, close to Kaiser(beta)
_SINC_ROLLOFF = 0.97  # cutoff as a fraction of the lower Nyquist frequency


def _resolve_resampler(resampler: str) -> str:
  if resampler not in RESAMPLERS:
    raise MerjaxError(f"resampler must be one of {', '.join(RESAMPLERS)}, got {resampler!r}")
  if resampler == "auto":
    return "fft" if _on_cpu() else "sinc"
  return resampler


def _sinc_taps(max_ratio: float) -> int:
  """Half the taps: the kernel's radius in input samples at the lowest cutoff, rounded up."""
  return math.ceil(_SINC_ZEROS * max_ratio / _SINC_ROLLOFF) + 1


def _sinc_resample(x, length, resampled, *, n_samples, half):
  """Band-limited resampling of ``x[:length]`` to ``resampled`` samples, cropped to ``n_samples``.

  Output sample ``j`` is the input interpolated at ``j * length / resampled`` (exactly, in
  integers) with a windowed sinc whose cutoff is ``rolloff * min(1, resampled / length)`` of the
  input's Nyquist frequency. Unlike ``scipy.signal.resample`` the signal is not periodic: the
  edges see silence, not the other end of the clip.

  Args:
    x: ``[shape=(batch, samples)]``, zero from each clip's ``length`` on.
    length: ``[shape=(batch,)]`` int32 input lengths.
    resampled: ``[shape=(batch,)]`` int32 output lengths.
    n_samples: static output length (zero past each clip's ``resampled``).
    half: static kernel radius in taps (:func:`_sinc_taps`).

  Returns:
    ``[shape=(batch, n_samples)]`` float32.
  """
  whole, fraction = _grid_positions(n_samples, length, resampled)
  cutoff = (_SINC_ROLLOFF * jnp.minimum(1.0, resampled.astype(jnp.float32)
                                        / length.astype(jnp.float32)))[:, None, None]
  padded = jnp.pad(x, ((0, 0), (half, half)))
  taps = 2 * half
  # Tap m reads input sample whole - half + 1 + m, i.e. padded[whole + 1 + m].
  windows = jax.vmap(jax.vmap(lambda v, i: lax.dynamic_slice(v, (i,), (taps,)),
                              in_axes=(None, 0)))(padded, whole + 1)
  distance = fraction[..., None] + (half - 1) - jnp.arange(taps, dtype=jnp.float32)
  u = 1.0 - (distance * cutoff / _SINC_ZEROS) ** 2
  window = jnp.where(u > 0, jnp.exp(_SINC_BETA * (jnp.sqrt(jnp.maximum(u, 0.0)) - 1.0)), 0.0)
  kernel = cutoff * jnp.sinc(cutoff * distance) * window
  out = jnp.sum(windows * kernel, axis=-1)
  keep = jnp.arange(n_samples)[None, :] < resampled[:, None]
  return jnp.where(keep, out, 0.0)


def _resampled_sizes(n_samples: int, max_rate: float) -> tuple[int, ...]:
  """Every ``ceil(round(n / rate) * rate)`` for rates up to ``max_rate``: ``round`` moves the
  stretched length by at most half a sample, so the product by at most ``rate / 2``."""
  margin = max_rate / 2 + 1e-3  # float64 rounding in librosa's ratio
  return tuple(range(math.ceil(n_samples - margin), math.ceil(n_samples + margin) + 1))


def _pitch_bounds(n_samples: int, max_semitones: float, bins_per_octave: int, n_fft: int,
                  hop: int) -> tuple[int, int]:
  """Static stretched length and frame count that cover every shift up to ``max_semitones``."""
  slowest = 2.0 ** (-abs(max_semitones) / bins_per_octave)
  longest = int(round(n_samples / slowest)) + 2
  return longest, _stretch_frames(longest, n_fft, hop)


@functools.partial(jax.jit, static_argnames=("longest", "sizes", "n_fft", "hop", "resampler"))
def _pitch_shift(waveforms, plan, *, longest, sizes, n_fft, hop, resampler="auto"):
  n = waveforms.shape[1]
  if _resolve_resampler(resampler) == "sinc":
    def sinc_clips(w, p):
      p = StretchPlan(*p)
      stretched = _stretch(w, p, n_samples=longest, n_fft=n_fft, hop=hop)
      return _sinc_resample(stretched, p.length, p.resampled, n_samples=n,
                            half=_sinc_taps(longest / n))

    return spectral.map_clips(sinc_clips, waveforms, tuple(plan))

  def clips(w, p):
    p = StretchPlan(*p)
    stretched = _stretch(w, p, n_samples=longest, n_fft=n_fft, hop=hop)
    return _resampled_spectrum(stretched, p.length, p.resampled, sizes=sizes)

  # The inverse FFTs run on the whole batch: XLA:CPU's FFT of an awkward size (n + 1) on a
  # slice of two clips is ~4x slower per clip.
  spectrum = spectral.map_clips(clips, waveforms, tuple(plan))
  return _inverse_real_dft(spectrum, plan.resampled, sizes=sizes, n_samples=n)


def _semitone_rates(semitones: Any, bins_per_octave: int):
  if _is_traced(semitones):
    return jnp.exp2(-semitones / bins_per_octave)
  return np.array([2.0 ** (-float(s) / bins_per_octave) for s in semitones])  # librosa's formula


def pitch_shift(waveforms: jax.Array, semitones: Any, *, sample_rate: int = 16000,
                bins_per_octave: int = 12, max_semitones: float = 2.0, n_fft: int = 2048,
                hop_length: int = 512, resampler: str = "auto") -> jax.Array:
  """Shifts each clip's pitch by its number of semitones, duration kept.

  Equal to ``librosa.effects.pitch_shift(y, sr=sample_rate, n_steps=n, res_type="fft")`` (run in
  float64) to a relative L2 error below 1e-4: a time stretch by
  ``rate = 2 ** (-n / bins_per_octave)``, then ``scipy.signal.resample`` (band-limited, FFT based)
  from ``sample_rate / rate`` back to ``sample_rate``, cropped to the clip length. librosa's
  default resampler (soxr) gives nearly the same result (log-mel correlation above 0.99).
  Traced semitones give a float32 rate, concrete ones librosa's float64 rate.

  Args:
    waveforms: ``[shape=(batch, samples)]``, at least ``n_fft`` samples.
    semitones: shift per clip, scalar or ``[shape=(batch,)]``.
    sample_rate: sampling rate in Hz (enters librosa's resampling ratio).
    bins_per_octave: steps per octave.
    max_semitones: the largest ``|semitones|`` the fixed shapes are sized for (static). Concrete
      values beyond it raise; traced values are clipped to it.
    n_fft: FFT size of the phase vocoder.
    hop_length: its hop; must divide ``n_fft``.
    resampler: ``"fft"`` (the exact ``scipy.signal.resample`` above: inverse FFTs of about
      ``samples`` points, odd lengths among them, and a loop, fast on CPU only), ``"sinc"`` (a
      windowed-sinc interpolator with a fixed number of taps, for GPUs and TPUs; its difference
      to librosa is given above :data:`RESAMPLERS`) or ``"auto"`` (``fft`` on CPU, ``sinc``
      elsewhere).

  Returns:
    ``[shape=(batch, samples)]`` float32.

  Raises:
    MerjaxError: on a shift beyond ``max_semitones``, a clip shorter than ``n_fft`` or a bad
      shape.
  """
  _check_hop(n_fft, hop_length)
  _resolve_resampler(resampler)
  waveforms = _check_waveforms(waveforms, n_fft=n_fft)
  batch, n = waveforms.shape
  semitones = _per_clip(semitones, batch, "semitones")
  if _is_traced(semitones):
    semitones = jnp.clip(semitones, -max_semitones, max_semitones)
  elif np.any(np.abs(semitones) > max_semitones):
    raise MerjaxError(f"pitch shifts {np.asarray(semitones)} exceed max_semitones={max_semitones}"
                      "; pass a larger max_semitones")
  longest, frames = _pitch_bounds(n, max_semitones, bins_per_octave, n_fft, hop_length)
  if _smooth_size(2 * longest) >= 2 ** 21:
    raise MerjaxError(f"pitch_shift handles clips up to about 2**20 / 2**(max_semitones / 12) "
                      f"samples (58 s at 16 kHz for 2 semitones); got {n} samples")
  plan = stretch_plan(_semitone_rates(semitones, bins_per_octave), n_samples=n,
                      out_frames=frames, n_fft=n_fft, hop_length=hop_length,
                      sample_rate=sample_rate)
  sizes = _resampled_sizes(n, 2.0 ** (abs(max_semitones) / bins_per_octave))
  return _pitch_shift(waveforms, plan, longest=longest, sizes=sizes, n_fft=n_fft,
                      hop=hop_length, resampler=resampler)


# ----------------------------------------------------------------------------- random draws


def _check_ranges(*, max_shift_seconds, max_semitones, min_rate, max_rate, max_gain_db):
  if not 0 < min_rate <= max_rate:
    raise MerjaxError(f"need 0 < min_rate <= max_rate, got {min_rate}, {max_rate}")
  for name, value in (("max_shift_seconds", max_shift_seconds), ("max_semitones", max_semitones),
                      ("max_gain_db", max_gain_db)):
    if not value >= 0:
      raise MerjaxError(f"{name} must be non-negative, got {value}")


def _clip_keys(key: jax.Array, batch: int) -> jax.Array:
  """One key per clip: ``key`` split, or used as is when it already holds ``batch`` keys."""
  typed = jnp.issubdtype(key.dtype, jax.dtypes.prng_key)
  single = key.ndim == (0 if typed else 1)
  if single:
    return jax.random.split(key, batch)
  if key.shape[0] != batch:
    raise MerjaxError(f"got {key.shape[0]} keys for a batch of {batch} clips")
  return key


def draw_parameters(key: jax.Array, batch: int, *, transform: str, max_shift_seconds: float = 5.0,
                    max_semitones: float = 2.0, min_rate: float = 0.5, max_rate: float = 1.5,
                    max_gain_db: float = 10.0) -> jax.Array:
  """Draws one parameter per clip from the paper's uniform ranges.

  Args:
    key: a PRNG key, or ``batch`` keys (one per clip, so a clip's draw does not depend on the
      batch it is in).
    batch: number of clips.
    transform: one of :data:`TRANSFORMS`.
    max_shift_seconds: time shift in U[-max, max] seconds.
    max_semitones: pitch shift in U[-max, max] semitones.
    min_rate: time-stretch rate in U[min_rate, max_rate].
    max_rate: see ``min_rate``.
    max_gain_db: power shift in U[-max, max] dB.

  Returns:
    ``[shape=(batch,)]`` float32 in the units of :data:`PARAMETER_UNITS`.

  Raises:
    MerjaxError: on an unknown transform or an invalid range.
  """
  _check_ranges(max_shift_seconds=max_shift_seconds, max_semitones=max_semitones,
                min_rate=min_rate, max_rate=max_rate, max_gain_db=max_gain_db)
  ranges = {"time_shift": (-max_shift_seconds, max_shift_seconds),
            "pitch_shift": (-max_semitones, max_semitones),
            "time_stretch": (min_rate, max_rate),
            "power_shift": (-max_gain_db, max_gain_db)}
  if transform not in ranges:
    raise MerjaxError(f"unknown augmentation {transform!r}; known: {', '.join(TRANSFORMS)}")
  low, high = ranges[transform]
  keys = _clip_keys(key, batch)
  return jax.vmap(lambda k: jax.random.uniform(k, (), jnp.float32, low, high))(keys)


def apply_transform(waveforms: jax.Array, parameters: Any, *, transform: str,
                    sample_rate: int = 16000, max_semitones: float = 2.0,
                    resampler: str = "auto") -> jax.Array:
  """Applies one transform with per-clip parameters in :data:`PARAMETER_UNITS`.

  Args:
    waveforms: ``[shape=(batch, samples)]``.
    parameters: ``[shape=(batch,)]`` seconds, semitones, rates or dB.
    transform: one of :data:`TRANSFORMS`.
    sample_rate: sampling rate in Hz.
    max_semitones: static bound for pitch shift's fixed shapes.
    resampler: pitch shift's resampler (see :func:`pitch_shift`).

  Returns:
    ``[shape=(batch, samples)]`` float32.
  """
  if transform == "time_shift":
    seconds = parameters if _is_traced(parameters) else np.asarray(parameters, np.float64)
    return time_shift(waveforms, seconds * sample_rate)
  if transform == "pitch_shift":
    return pitch_shift(waveforms, parameters, sample_rate=sample_rate,
                       max_semitones=max_semitones, resampler=resampler)
  if transform == "time_stretch":
    return time_stretch(waveforms, parameters)
  if transform == "power_shift":
    return power_shift(waveforms, parameters)
  raise MerjaxError(f"unknown augmentation {transform!r}; known: {', '.join(TRANSFORMS)}")


def random_augment(key: jax.Array, waveforms: jax.Array, *, transform: str,
                   sample_rate: int = 16000, max_shift_seconds: float = 5.0,
                   max_semitones: float = 2.0, min_rate: float = 0.5, max_rate: float = 1.5,
                   max_gain_db: float = 10.0, resampler: str = "auto"
                   ) -> tuple[jax.Array, jax.Array]:
  """Applies ``transform`` with parameters drawn per clip from the paper's ranges.

  Jittable (``transform`` and the ranges are static); the same key gives the same result.

  Args:
    key: a PRNG key, or one key per clip.
    waveforms: ``[shape=(batch, samples)]``.
    transform: one of :data:`TRANSFORMS`.
    sample_rate: sampling rate in Hz (seconds of time shift to samples).
    max_shift_seconds: time shift range, U[-max, max] s.
    max_semitones: pitch shift range, U[-max, max] semitones.
    min_rate: time stretch range, U[min_rate, max_rate].
    max_rate: see ``min_rate``.
    max_gain_db: power shift range, U[-max, max] dB.
    resampler: pitch shift's resampler (see :func:`pitch_shift`).

  Returns:
    ``(augmented, parameters)``: ``[shape=(batch, samples)]`` float32 and ``[shape=(batch,)]``
    drawn parameters in :data:`PARAMETER_UNITS`.
  """
  parameters = draw_parameters(key, waveforms.shape[0], transform=transform,
                               max_shift_seconds=max_shift_seconds,
                               max_semitones=max_semitones, min_rate=min_rate,
                               max_rate=max_rate, max_gain_db=max_gain_db)
  augmented = apply_transform(waveforms, parameters, transform=transform,
                              sample_rate=sample_rate, max_semitones=max_semitones,
                              resampler=resampler)
  return augmented, parameters


_RANGE_NAMES = ("max_shift_seconds", "max_semitones", "min_rate", "max_rate", "max_gain_db")


@functools.partial(jax.jit, static_argnames=("transforms", "sample_rate", "resampler")
                   + _RANGE_NAMES)
def augment_variants(key: jax.Array, waveforms: jax.Array, *,
                     transforms: tuple[str, ...] = TRANSFORMS, sample_rate: int = 16000,
                     max_shift_seconds: float = 5.0, max_semitones: float = 2.0,
                     min_rate: float = 0.5, max_rate: float = 1.5, max_gain_db: float = 10.0,
                     resampler: str = "auto"
                     ) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
  """Every clip under each transform on its own, the paper's offline x5 set in one call.

  Each transform draws from its own stream, ``jax.random.fold_in(key, TRANSFORMS.index(name))``
  (per clip when ``key`` holds one key per clip), so a variant does not depend on which other
  transforms are requested.

  Args:
    key: a PRNG key, or one key per clip.
    waveforms: ``[shape=(batch, samples)]``.
    transforms: which transforms, a tuple of names from :data:`TRANSFORMS`.
    sample_rate: sampling rate in Hz.
    max_shift_seconds: see :func:`random_augment`.
    max_semitones: see :func:`random_augment`.
    min_rate: see :func:`random_augment`.
    max_rate: see :func:`random_augment`.
    max_gain_db: see :func:`random_augment`.
    resampler: pitch shift's resampler (see :func:`pitch_shift`).

  Returns:
    ``(variants, parameters)``: dicts keyed by transform name of ``[shape=(batch, samples)]``
    waveforms and ``[shape=(batch,)]`` parameters.
  """
  ranges = dict(max_shift_seconds=max_shift_seconds, max_semitones=max_semitones,
                min_rate=min_rate, max_rate=max_rate, max_gain_db=max_gain_db)
  keys = _clip_keys(key, waveforms.shape[0])
  variants, parameters = {}, {}
  for name in transforms:
    if name not in TRANSFORMS:
      raise MerjaxError(f"unknown augmentation {name!r}; known: {', '.join(TRANSFORMS)}")
    stream = jax.vmap(functools.partial(jax.random.fold_in, data=TRANSFORMS.index(name)))(keys)
    variants[name], parameters[name] = random_augment(stream, waveforms, transform=name,
                                                      sample_rate=sample_rate,
                                                      resampler=resampler, **ranges)
  return variants, parameters


@functools.partial(jax.jit, static_argnames=("transforms", "include_original", "sample_rate",
                                             "n_fft", "hop_length", "n_mels", "fmin", "fmax",
                                             "ref", "amin", "top_db", "resampler")
                   + _RANGE_NAMES)
def augment_log_mel(key: jax.Array, waveforms: jax.Array, *,
                    transforms: tuple[str, ...] = TRANSFORMS, include_original: bool = True,
                    sample_rate: int = 16000, n_fft: int = 2048, hop_length: int = 512,
                    n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None,
                    ref: float = 1.0, amin: float = 1e-10, top_db: float | None = 80.0,
                    max_shift_seconds: float = 5.0, max_semitones: float = 2.0,
                    min_rate: float = 0.5, max_rate: float = 1.5,
                    max_gain_db: float = 10.0, resampler: str = "auto"
                    ) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
  """Augment, then log-mel, in one jitted function (the CNN branch's augmented input).

  Args:
    key: a PRNG key, or one key per clip.
    waveforms: ``[shape=(batch, samples)]``.
    transforms: transforms to apply, each on its own (see :func:`augment_variants`).
    include_original: also return the un-augmented clips' log-mels under ``"original"``.
    sample_rate: sampling rate in Hz.
    n_fft: see :func:`merjax.audio.log_mel`.
    hop_length: see :func:`merjax.audio.log_mel`.
    n_mels: see :func:`merjax.audio.log_mel`.
    fmin: see :func:`merjax.audio.log_mel`.
    fmax: see :func:`merjax.audio.log_mel`.
    ref: see :func:`merjax.audio.log_mel`.
    amin: see :func:`merjax.audio.log_mel`.
    top_db: see :func:`merjax.audio.log_mel`.
    max_shift_seconds: see :func:`random_augment`.
    max_semitones: see :func:`random_augment`.
    min_rate: see :func:`random_augment`.
    max_rate: see :func:`random_augment`.
    max_gain_db: see :func:`random_augment`.
    resampler: pitch shift's resampler (see :func:`pitch_shift`).

  Returns:
    ``(log_mels, parameters)``: a dict of ``[shape=(batch, n_mels, frames)]`` log-mels keyed by
    transform name (and ``"original"``) and the dict of drawn parameters.
  """
  variants, parameters = augment_variants(
      key, waveforms, transforms=transforms, sample_rate=sample_rate,
      max_shift_seconds=max_shift_seconds, max_semitones=max_semitones, min_rate=min_rate,
      max_rate=max_rate, max_gain_db=max_gain_db, resampler=resampler)
  if include_original:
    variants = {"original": jnp.asarray(waveforms, jnp.float32), **variants}
  mel = dict(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels,
             fmin=fmin, fmax=fmax, ref=ref, amin=amin, top_db=top_db)
  return {name: spectral._log_mel(w, **mel) for name, w in variants.items()}, parameters
