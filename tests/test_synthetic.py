"""The synthetic quadrant dataset and the stratified split."""

import numpy as np
import pytest

from merjax.data import synthetic
from merjax.data.splits import SPLITS, stratified_split
from merjax.errors import MerjaxError

# -- stratified_split ------------------------------------------------------------------------


def test_split_is_stratified_and_proportional():
  labels = np.repeat(np.arange(4), [100, 60, 40, 20])
  splits = stratified_split(labels, seed=0)
  assert splits.shape == labels.shape and set(splits) == set(SPLITS)
  for q, n in enumerate([100, 60, 40, 20]):
    counts = [int(np.sum((labels == q) & (splits == s))) for s in SPLITS]
    assert sum(counts) == n
    assert np.allclose(counts, [0.7 * n, 0.15 * n, 0.15 * n], atol=1.0)


def test_split_is_deterministic_and_seeded():
  labels = np.repeat(["Q1", "Q2", "Q3", "Q4"], 25)
  a, b = stratified_split(labels, seed=3), stratified_split(labels, seed=3)
  assert np.array_equal(a, b)
  assert not np.array_equal(a, stratified_split(labels, seed=4))


def test_split_populates_every_split_of_tiny_classes():
  splits = stratified_split(np.repeat(np.arange(4), 3), seed=0)
  for q in range(4):
    assert sorted(splits[q * 3:(q + 1) * 3]) == ["test", "train", "validate"]


def test_split_custom_fractions():
  splits = stratified_split(np.zeros(10, int), fractions=(0.4, 0.3, 0.3), seed=1)
  assert [int(np.sum(splits == s)) for s in SPLITS] == [4, 3, 3]
  splits = stratified_split(np.zeros(10, int), fractions=(0.8, 0.2, 0.0), seed=1)
  assert [int(np.sum(splits == s)) for s in SPLITS] == [8, 2, 0]


def test_split_rejects_too_few_examples_naming_the_class():
  labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 3, 3, 3])
  with pytest.raises(MerjaxError, match=r"class 1 \(Q2\) has 2 example"):
    stratified_split(labels, seed=0)
  with pytest.raises(MerjaxError, match="fractions"):
    stratified_split(labels, fractions=(0.5, 0.5, 0.5), seed=0)


# -- generate ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small():
  return synthetic.generate(clips_per_quadrant=3, seconds=2.0, seed=7)


def test_shapes_ids_and_balance(small):
  assert small.waveforms.shape == (12, 32000) and small.waveforms.dtype == np.float32
  assert small.labels.dtype == np.int32
  assert np.array_equal(np.bincount(small.labels), [3, 3, 3, 3])
  assert small.song_ids[0] == "SYN-Q1-0000" and small.song_ids[-1] == "SYN-Q4-0002"
  assert len(set(small.song_ids)) == 12
  assert small.params.shape == (12,) and np.array_equal(small.params["quadrant"], small.labels)
  assert set(small.params["mode"]) <= {"major", "minor"}
  assert set(small.params["sweep"]) <= {"up", "down"}
  assert small.sample_rate == 16000 and len(small) == 12


def test_deterministic_and_independent_of_set_size(small):
  again = synthetic.generate(clips_per_quadrant=3, seconds=2.0, seed=7)
  assert np.array_equal(small.waveforms, again.waveforms)
  assert np.array_equal(small.params, again.params)
  bigger = synthetic.generate(clips_per_quadrant=4, seconds=2.0, seed=7)
  assert np.array_equal(bigger.waveforms[4:7], small.waveforms[3:6])  # Q2 clips 0..2
  other = synthetic.generate(clips_per_quadrant=3, seconds=2.0, seed=8)
  assert not np.array_equal(small.waveforms, other.waveforms)


def test_peak_normalised_to_the_drawn_loudness(small):
  peaks = np.abs(small.waveforms).max(axis=1)
  assert np.all(peaks <= 1.0)
  assert np.allclose(peaks, 10 ** (small.params["loudness_db"] / 20), rtol=1e-5)
  assert np.all(np.isfinite(small.waveforms))


def test_factor_distributions_split_the_evidence():
  draws = {q: np.array([synthetic.draw_params(q, np.random.default_rng([1, q, i]))
                        for i in range(400)]) for q in range(4)}
  mean = {k: [float(np.mean(draws[q][k])) for q in range(4)]
          for k in ("tempo", "loudness_db", "brightness", "dissonance")}
  major = [float(np.mean(draws[q]["mode"] == "major")) for q in range(4)]
  rising = [float(np.mean(draws[q]["sweep"] == "up")) for q in range(4)]
  assert min(mean["tempo"][:2]) > max(mean["tempo"][2:]) + 20  # aroused quadrants are faster
  assert min(mean["loudness_db"][:2]) > max(mean["loudness_db"][2:])
  assert min(mean["brightness"][:2]) > max(mean["brightness"][2:])
  # Valence: harmony (mode, dissonance) for Q1/Q2 only, sweep direction for Q3/Q4 only.
  assert major[0] > 0.8 and major[1] < 0.2 and 0.35 < major[2] < 0.65 and 0.35 < major[3] < 0.65
  assert mean["dissonance"][1] > 0.4 > 0.2 > max(mean["dissonance"][i] for i in (0, 2, 3))
  assert rising[3] > 0.9 and rising[2] < 0.1 and 0.35 < rising[0] < 0.65 and 0.35 < rising[1] < 0.65
  # Nothing else tells the quadrants of one arousal level apart.
  for key in ("tempo", "loudness_db", "brightness", "dissonance", "percussion", "articulation"):
    for a, b in ((0, 1), (2, 3)):
      if key == "dissonance" and a == 0:
        continue
      x, y = draws[a][key], draws[b][key]
      assert abs(x.mean() - y.mean()) < 4 * np.sqrt((x.var() + y.var()) / len(x)), (key, a, b)
  # ... with overlap: some slow Q1 clips exist.
  assert np.min(draws[0]["tempo"]) < np.max(draws[2]["tempo"])


def test_a_falling_sweep_is_the_rising_one_reversed():
  rising = synthetic._sweep(rising=True, seconds=0.3, sample_rate=16000,
                            rng=np.random.default_rng(3))
  falling = synthetic._sweep(rising=False, seconds=0.3, sample_rate=16000,
                             rng=np.random.default_rng(3))
  np.testing.assert_array_equal(falling, rising[::-1])
  assert np.abs(rising).max() == pytest.approx(1.0)
  # Its energy glides up: the first half is lower in frequency than the second.
  def centroid(x):
    spectrum = np.abs(np.fft.rfft(x))
    return float((np.fft.rfftfreq(len(x), 1 / 16000) * spectrum).sum() / spectrum.sum())
  half = len(rising) // 2
  assert centroid(rising[:half]) < 0.7 * centroid(rising[half:])


def test_sweep_direction_is_invisible_to_frame_statistics():
  """Mean and spread of every mel band over frames are the same for both directions."""
  import librosa
  params = synthetic.draw_params(0, np.random.default_rng(4))
  clips = {}
  for direction in ("up", "down"):
    params["sweep"] = direction
    clips[direction] = synthetic.synthesize(params, seconds=3.0, sample_rate=16000,
                                            rng=np.random.default_rng(5))
  stats = {}
  for direction, y in clips.items():
    mel = librosa.power_to_db(librosa.feature.melspectrogram(y=y, sr=16000))
    stats[direction] = np.concatenate([mel.mean(1), mel.std(1)])
  assert not np.array_equal(clips["up"], clips["down"])
  np.testing.assert_allclose(stats["up"], stats["down"], atol=1.0)


def test_clip_encodes_its_tempo_and_mode():
  from merjax.features.builtin import estimate_key, estimate_tempo
  hits_tempo = hits_mode = 0
  for q in range(4):
    for i in range(2):
      y, p = synthetic.clip(q, i, seconds=12.0, seed=0)
      tempo = estimate_tempo(y)
      # the tracker may lock onto the half or double tempo
      hits_tempo += any(abs(tempo * f / p["tempo"] - 1) < 0.04 for f in (0.5, 1.0, 2.0))
      tonic, mode, _ = estimate_key(y)
      hits_mode += mode == p["mode"]
  assert hits_tempo >= 7 and hits_mode >= 6


@pytest.mark.parametrize("kwargs, match", [
    ({"clips_per_quadrant": 0}, "clips_per_quadrant"),
    ({"clips_per_quadrant": 2, "seconds": -1.0}, "seconds"),
    ({"clips_per_quadrant": 2, "seconds": float("nan")}, "seconds"),
    ({"clips_per_quadrant": 2, "sample_rate": 10}, "sample_rate"),
])
def test_bad_arguments(kwargs, match):
  with pytest.raises(MerjaxError, match=match):
    synthetic.generate(**kwargs)


@pytest.mark.slow  # extracts features of 96 clips
def test_learnable_but_not_trivial():
  """A linear model on the builtin features beats chance clearly but is not perfect."""
  from sklearn.linear_model import LogisticRegression
  from sklearn.model_selection import StratifiedKFold, cross_val_score
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler

  from merjax.features import FeaturePreprocessor, extract_features, feature_names
  data = synthetic.generate(clips_per_quadrant=24, seconds=6.0, seed=11)
  X = extract_features(data.waveforms)
  X = FeaturePreprocessor(correlation_threshold=None).fit_transform(X, feature_names())
  model = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
  scores = cross_val_score(model, X, data.labels, cv=StratifiedKFold(4, shuffle=True,
                                                                      random_state=0))
  assert 0.5 < scores.mean() < 0.97
