"""The builtin extractor: known answers, names and manifest, robustness, parallel extraction."""

import csv
import json
import re

import numpy as np
import pytest

from merjax.errors import MerjaxError
from merjax.features import (
  BACKENDS,
  builtin,
  extract_features,
  feature_manifest,
  feature_names,
  write_manifest,
)

SR = 16000


def _sine(freq, seconds=3.0, amplitude=0.5):
  t = np.arange(int(seconds * SR)) / SR
  return (amplitude * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _click_track(bpm, seconds=20.0):
  y = np.zeros(int(seconds * SR), np.float32)
  click = np.random.default_rng(0).standard_normal(160) * np.hanning(160)
  for start in np.round(np.arange(0, seconds - 0.02, 60.0 / bpm) * SR).astype(int):
    y[start:start + 160] += click
  return y


def _cadence(chords, seconds_per_chord=1.0):
  """Harmonic tones with decaying envelopes, one chord (MIDI notes) after the other."""
  t = np.arange(int(seconds_per_chord * SR)) / SR
  def tone(midi):
    f = 440.0 * 2 ** ((midi - 69) / 12)
    return sum(0.3 / k * np.sin(2 * np.pi * f * k * t) for k in range(1, 6)) * np.exp(-t / 1.5)
  return np.concatenate([sum(tone(m) for m in chord) for chord in chords]).astype(np.float32)


def _value(features, name):
  return float(features[feature_names().index(name)])


# -- known answers ----------------------------------------------------------------------------


@pytest.mark.parametrize("freq", [440.0, 1000.0, 2500.0])
def test_spectral_centroid_of_a_pure_tone_is_its_frequency(freq):
  features = builtin.extract(_sine(freq))
  assert _value(features, "tone_colour.spectral_centroid.median") == pytest.approx(freq, rel=0.01)
  if freq < 1319:  # the pitch candidates end at E6
    midi = 12 * np.log2(freq / 440) + 69
    assert _value(features, "melody.pitch.median") == pytest.approx(midi, abs=0.5)


@pytest.mark.parametrize("bpm", [120.0, 90.0, 150.0])
def test_tempo_of_a_click_track(bpm):
  y = _click_track(bpm)
  features = builtin.extract(y)
  assert _value(features, "rhythm.tempo_bpm.value") == pytest.approx(bpm, abs=2.0)
  assert _value(features, "rhythm.tempo_beat_rate.value") == pytest.approx(bpm / 60, rel=0.05)
  assert _value(features, "rhythm.events_onset_rate.value") == pytest.approx(bpm / 60, rel=0.05)


def test_key_of_a_c_major_cadence_is_c_major():
  c_major = [[48, 60, 64, 67], [53, 60, 65, 69], [55, 59, 62, 67], [48, 60, 64, 67]]  # I IV V I
  y = np.tile(_cadence(c_major), 2)
  assert builtin.estimate_key(y)[:2] == ("C", "major")
  features = builtin.extract(y)
  assert _value(features, "harmony.key_mode.value") == 1.0
  assert _value(features, "harmony.key_mode_clarity.value") > 0.1
  # Relative chroma puts the tonic first: C is the strongest pitch class of the cadence.
  relative = [_value(features, f"harmony.chroma_key_relative_{i:02d}.mean") for i in range(12)]
  assert int(np.argmax(relative)) == 0


def test_key_of_an_a_minor_cadence_is_a_minor():
  a_minor = [[45, 57, 60, 64], [50, 57, 62, 65], [52, 56, 59, 64], [45, 57, 60, 64]]  # i iv V i
  assert builtin.estimate_key(np.tile(_cadence(a_minor), 2))[:2] == ("A", "minor")


@pytest.mark.parametrize("amplitude", [0.5, 0.05])
def test_rms_of_a_known_amplitude(amplitude):
  features = builtin.extract(_sine(440.0, amplitude=amplitude))
  rms = amplitude / np.sqrt(2)
  assert _value(features, "dynamics.rms.median") == pytest.approx(rms, rel=1e-3)
  assert _value(features, "dynamics.level_rms_db.value") == pytest.approx(20 * np.log10(rms),
                                                                          abs=0.05)
  assert _value(features, "dynamics.level_peak_db.value") == pytest.approx(
      20 * np.log10(amplitude), abs=0.05)
  assert _value(features, "dynamics.level_crest_db.value") == pytest.approx(3.01, abs=0.05)


def test_brightness_roughness_and_harmonicity_move_the_right_way():
  t = np.arange(3 * SR) / SR
  dark = sum(0.3 / k ** 2 * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 20))
  bright = sum(0.3 / k ** 0.5 * np.sin(2 * np.pi * 220 * k * t) for k in range(1, 20))
  consonant = np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 660 * t)
  rough = np.sin(2 * np.pi * 440 * t) + np.sin(2 * np.pi * 466 * t)  # a minor second
  noise = np.random.default_rng(0).standard_normal(len(t))
  f = {name: builtin.extract((0.2 * y).astype(np.float32)) for name, y in
       [("dark", dark), ("bright", bright), ("consonant", consonant), ("rough", rough),
        ("noise", noise)]}
  name = "tone_colour.spectral_brightness.mean"
  assert _value(f["bright"], name) > _value(f["dark"], name) + 0.1
  name = "harmony.roughness.mean"
  assert _value(f["rough"], name) > 3 * _value(f["consonant"], name)
  name = "melody.pitch_salience.median"
  assert _value(f["dark"], name) > 0.8 > 0.5 > _value(f["noise"], name)
  name = "tone_colour.spectral_flatness.mean"
  assert _value(f["noise"], name) > 0.3 > 0.01 > _value(f["dark"], name)


# -- names and manifest -----------------------------------------------------------------------


def test_names_follow_the_convention_and_cover_every_dimension():
  names = feature_names()
  assert len(names) >= 500 and len(set(names)) == len(names)
  pattern = re.compile(rf"^({'|'.join(builtin.DIMENSIONS)})\.[A-Za-z0-9_]+\.[a-z0-9_]+$")
  assert all(pattern.match(n) for n in names), [n for n in names if not pattern.match(n)][:5]
  assert {n.split(".")[0] for n in names} == set(builtin.DIMENSIONS)
  assert feature_names(sample_rate=22050) == names
  assert BACKENDS == ("builtin", "essentia", "table")


def test_names_and_manifest_agree(tmp_path):
  manifest = feature_manifest()
  assert [m.name for m in manifest] == feature_names()
  assert all(m.dimension == m.name.split(".")[0] for m in manifest)
  assert all(m.description and "\n" not in m.description for m in manifest)
  write_manifest(tmp_path / "m.csv")
  with open(tmp_path / "m.csv", newline="") as f:
    rows = list(csv.DictReader(f))
  assert [r["name"] for r in rows] == feature_names()
  assert rows[0].keys() == {"name", "dimension", "description"}
  write_manifest(tmp_path / "sub" / "m.json")
  assert [r["name"] for r in json.loads((tmp_path / "sub" / "m.json").read_text())] == \
      feature_names()
  with pytest.raises(MerjaxError, match=r"\.csv or \.json"):
    write_manifest(tmp_path / "m.txt")


def test_extract_length_matches_the_names():
  features = builtin.extract(_sine(330.0, seconds=2.0))
  assert features.shape == (len(feature_names()),) and features.dtype == np.float32


# -- robustness -------------------------------------------------------------------------------


@pytest.mark.parametrize("y", [np.zeros(3 * SR, np.float32), np.zeros(100, np.float32),
                               _sine(440.0, seconds=0.05)],
                         ids=["silence", "tiny", "50ms"])
def test_degenerate_clips_give_finite_values_or_nan_in_undefined_columns(y):
  features = builtin.extract(y)
  names = np.array(feature_names())
  bad = names[~np.isfinite(features)]
  allowed = ("melody.pitch.", "melody.interval.", "rhythm.tempo_bpm.")
  assert all(n.startswith(allowed) for n in bad), bad[:10]
  assert not np.any(np.isinf(features))


def test_other_sample_rates_work():
  y = _sine(1000.0, seconds=2.0)
  for rate in (8000, 22050, 44100):
    t = np.arange(2 * rate) / rate
    features = builtin.extract((0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32),
                               sample_rate=rate)
    assert _value(features, "tone_colour.spectral_centroid.median") == pytest.approx(1000,
                                                                                    rel=0.01)
  assert builtin.extract(y).shape == (len(feature_names()),)


def test_extract_features_batch_and_errors():
  clips = np.stack([_sine(440.0, 2.0), _sine(880.0, 2.0)])
  X = extract_features(clips)
  assert X.shape == (2, len(feature_names())) and X.dtype == np.float32
  np.testing.assert_array_equal(X[1], builtin.extract(clips[1]))
  ragged = extract_features([clips[0], clips[1][:20000]])
  np.testing.assert_array_equal(ragged[0], X[0])
  with pytest.raises(MerjaxError, match="unknown feature backend"):
    extract_features(clips, backend="matlab")
  with pytest.raises(MerjaxError, match="table backend"):
    extract_features(clips, backend="table")
  with pytest.raises(MerjaxError, match="clips, samples"):
    extract_features(clips[0])
  with pytest.raises(MerjaxError, match="workers"):
    extract_features(clips, workers=0)
  with pytest.raises(MerjaxError, match="sample_rate"):
    extract_features(clips, sample_rate=0)


@pytest.mark.slow  # starts worker processes
def test_worker_processes_give_the_same_features():
  clips = np.stack([_sine(f, 1.5) for f in (220.0, 330.0, 440.0)])
  # Equal up to float rounding: a fresh worker process and this one (which runs XLA) can take
  # other BLAS kernels or thread counts, so sums of tiny terms differ in the last bits (seen
  # on an AVX2 host: at most 9e-5 absolute on features of magnitude 1e-4..1e3).
  np.testing.assert_allclose(extract_features(clips, workers=2), extract_features(clips),
                             rtol=1e-5, atol=2e-4)
