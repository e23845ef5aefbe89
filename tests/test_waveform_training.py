"""The ``waveforms`` pipeline: clips in, augmentation + log-mel + z-normalisation inside the
CNN's jitted step, equal to the precomputed pipeline (merjax.batches.augmented)."""

import contextlib
import functools

import _parallel_worker as worker
import jax
import numpy as np
import pytest

from merjax import parallel
from merjax.batches import augmented as augmentation
from merjax.batches.augmented import (
  WaveformBatches,
  WaveformFrontEnd,
  WaveformTraining,
  offline_training_set,
)
from merjax.config import AudioConfig, AugmentConfig, ModelConfig, TrainConfig
from merjax.errors import MerjaxError
from merjax.inputs.log_mel import log_mels
from merjax.models import CNN

AUDIO = AudioConfig(clip_seconds=1.0)
# A small CNN that takes 1 s clips (32 frames): pools over mel bins only.
MODEL = ModelConfig(conv_filters=8, conv_pools=((1, 2),) * 4, cnn_embedding=16)
OFFLINE = AugmentConfig(mode="offline", seed=5)
MEL_MEAN, MEL_STD = -30.0, 20.0
# Plain SGD: Adam's normalised steps turn float-rounding gradients into lr-sized moves.
TRAIN = TrainConfig(optimizer="sgd", learning_rate=1e-2, batch_size=8, max_epochs=2,
                    patience=5, train_accuracy_stop=None, seed=1)
ONE_DEVICE = parallel.make_data_mesh(devices=1)


def make_clips():
  rng = np.random.default_rng(0)
  t = np.arange(AUDIO.clip_samples) / AUDIO.sample_rate
  freqs = rng.uniform(200, 800, size=(4, 1))
  waveforms = (0.3 * np.sin(2 * np.pi * freqs * t) + 0.01 * rng.normal(size=(4, t.size)))
  waveforms = waveforms.astype(np.float32)
  return waveforms, np.array([0, 1, 2, 3], np.int32), log_mels(waveforms, audio=AUDIO)


def waveform_set(waveforms, labels, *, mesh=ONE_DEVICE, epoch=0, augment=OFFLINE):
  """Every example's normalised log-mel as the waveform step computes it, in example order."""
  batches = WaveformBatches(waveforms, labels, augment=augment, batch_size=8, seed=0, mesh=mesh)
  fn = _front_end(augment, mesh)
  rows = {}
  for batch in batches.epoch(epoch):
    mels, index, mask = jax.device_get((fn(batch["inputs"]), batch["index"], batch["mask"]))
    rows.update({int(i): m for i, m, keep in zip(index, mels, mask) if keep})
  return np.stack([rows[i] for i in range(len(rows))])


@functools.cache
def _front_end(augment, mesh):
  """The training step's input computation alone, jitted."""
  return jax.jit(WaveformFrontEnd(apply=None, audio=AUDIO, augment=augment, mel_mean=MEL_MEAN,
                                  mel_std=MEL_STD, mesh=mesh).log_mels)


def flat_params(state):
  return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf
          in jax.tree_util.tree_leaves_with_path(jax.device_get(state.variables))}


def fit_waveforms(waveforms, labels, *, mesh=ONE_DEVICE, guard=False, mels=None):
  """Two epochs of the CNN: from waveforms, or (``mels`` given) from the precomputed set."""
  from merjax.train import train_classifier
  val = {"inputs": (log_mels(waveforms[:2], audio=AUDIO) - MEL_MEAN) / MEL_STD,
         "label": labels[:2]}
  kwargs = dict(val=val, config=TRAIN, mesh=mesh, stage="cnn", log=None)
  if mels is not None:
    kwargs.update(train={"inputs": mels, "label": np.tile(labels, 5)})
  else:
    kwargs.update(train={"inputs": val["inputs"], "label": labels[:2]},
                  cnn_training=WaveformTraining(waveforms=waveforms, labels=labels, audio=AUDIO,
                                                augment=OFFLINE, mel_mean=MEL_MEAN,
                                                mel_std=MEL_STD))
  with _guarded_fit(guard):
    return train_classifier(CNN(MODEL), **kwargs)


@contextlib.contextmanager
def _guarded_fit(guard):
  """Runs :func:`merjax.train.fit` (the epoch loop) under ``transfer_guard("disallow")``."""
  from merjax.train import stages
  if not guard:
    yield
    return
  plain = stages.fit

  def guarded(*args, **kwargs):
    with jax.transfer_guard("disallow"):
      return plain(*args, **kwargs)

  stages.fit = guarded
  try:
    yield
  finally:
    stages.fit = plain


@pytest.fixture(scope="module")
def clips():
  return make_clips()


@pytest.fixture(scope="module")
def precomputed(clips):
  waveforms, labels, mels = clips
  normalised = (mels - MEL_MEAN) / MEL_STD
  return offline_training_set(waveforms, labels, normalised, audio=AUDIO, augment=OFFLINE,
                              mel_mean=MEL_MEAN, mel_std=MEL_STD)[0]


def test_waveform_log_mels_equal_the_precomputed_set(clips, precomputed):
  waveforms, labels, _ = clips
  got = waveform_set(waveforms, labels)
  assert got.shape == precomputed.shape == (20, 128, AUDIO.frames)
  # within 1e-4 dB (the sets are normalised by MEL_STD dB)
  assert np.abs(got - precomputed).max() * MEL_STD < 1e-4
  # the same set every epoch (offline), fresh variants per epoch (online), originals kept
  np.testing.assert_array_equal(waveform_set(waveforms, labels, epoch=3), got)
  none = waveform_set(waveforms, labels, augment=AugmentConfig(mode="none"))
  np.testing.assert_array_equal(none, got[:4])


@pytest.mark.slow
def test_online_waveforms_equal_online_precomputed(clips):
  waveforms, labels, mels = clips
  online = AugmentConfig(mode="online", seed=2)
  source = augmentation.OnlineAugmentedBatches(
      waveforms, labels, (mels - MEL_MEAN) / MEL_STD, audio=AUDIO, augment=online,
      mel_mean=MEL_MEAN, mel_std=MEL_STD, batch_size=8, mesh=ONE_DEVICE)
  rows = {}
  for batch in source.epoch(1):
    for i, m, keep in zip(*jax.device_get((batch["index"], batch["inputs"], batch["mask"]))):
      if keep:
        rows[int(i)] = m
  expected = np.stack([rows[i] for i in range(20)])
  got = waveform_set(waveforms, labels, epoch=1, augment=online)
  assert np.abs(got - expected).max() * MEL_STD < 1e-4
  # fresh variants every epoch, the originals kept
  other = waveform_set(waveforms, labels, epoch=2, augment=online)
  np.testing.assert_array_equal(other[:4], got[:4])
  assert np.abs(other[4:] - got[4:]).max() > 0.1


@pytest.mark.slow
def test_waveform_training_equals_precomputed_training(clips, precomputed):
  """Two epochs (six steps) from the same start: same batches, same updates."""
  waveforms, labels, _ = clips
  ours = fit_waveforms(waveforms, labels)
  reference = fit_waveforms(waveforms, labels, mels=precomputed)
  assert ours.history[0]["train_loss"] == pytest.approx(reference.history[0]["train_loss"],
                                                        rel=1e-5)
  a, b = flat_params(ours.state), flat_params(reference.state)
  assert a.keys() == b.keys() and any("kernel" in k for k in a)
  for key in a:
    np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
  # the trained variables are the plain CNN's: inference needs no front end
  assert "batch_stats" in str(list(a))


def test_auto_pipeline_is_precomputed_on_cpu_and_checked():
  assert augmentation.resolve_pipeline(AugmentConfig()) == "precomputed"
  assert augmentation.resolve_pipeline(AugmentConfig(pipeline="waveforms")) == "waveforms"
  with pytest.raises(MerjaxError, match="pipeline"):
    AugmentConfig(pipeline="host")


def test_fit_runs_under_transfer_guard(clips, precomputed):
  """No implicit host<->device transfer in the training loop (precomputed inputs, one device;
  the waveform pipeline on 8 devices in the slow test)."""
  waveforms, labels, _ = clips
  result = fit_waveforms(waveforms, labels, guard=True, mels=precomputed)
  assert len(result.history) == 2
  with pytest.raises(Exception, match="[Dd]isallowed"):  # the guard is really on
    with jax.transfer_guard("disallow"):
      jax.numpy.asarray(np.ones(3)) + 1


@pytest.mark.slow
def test_offline_set_identical_on_1_and_8_devices_and_every_epoch(clips, precomputed, tmp_path):
  out = tmp_path / "waveforms.npz"
  code, output = worker.finish(worker.subprocess.Popen(
      [worker.sys.executable, str(worker.os.path.join(worker.REPO, "tests",
                                                     "_waveform_worker.py")), "--out", str(out)],
      env=dict(worker.os.environ, PYTHONPATH=worker.REPO, JAX_PLATFORMS="cpu"),
      stdout=worker.subprocess.PIPE, stderr=worker.subprocess.STDOUT, text=True), timeout=600)
  assert code == 0, output[-3000:]
  r = np.load(out)
  one = r["mels/1/0"]
  # every epoch the same set, bit for bit, on 1 and on 8 devices
  np.testing.assert_array_equal(r["mels/1/1"], one)
  np.testing.assert_array_equal(r["mels/8/1"], r["mels/8/0"])
  # 8 devices (one clip each) vs 1 (eight clips): the same draws; XLA:CPU fuses pitch shift's
  # resampler differently for another per-device batch, so its rows (variant 2: examples 8-11)
  # agree to float rounding (2.4e-4 dB measured), the others bit for bit
  pitch = slice(8, 12)
  np.testing.assert_array_equal(np.delete(r["mels/8/0"], np.s_[pitch], 0),
                                np.delete(one, np.s_[pitch], 0))
  assert np.abs(r["mels/8/0"] - one).max() * MEL_STD < 5e-4
  assert np.abs(one - precomputed).max() * MEL_STD < 1e-4
  # 8 devices under the transfer guard train like one device from the precomputed set, to
  # data-parallel rounding (measured: up to 3 % of a leaf's largest value, in BatchNorm biases of
  # about 1e-3, after six steps; a wrong row or a missing all-reduce moves whole leaves)
  waveforms, labels, _ = clips
  reference = flat_params(fit_waveforms(waveforms, labels, mels=precomputed).state)
  for key, value in reference.items():
    scale = np.abs(value).max()
    assert np.abs(r[f"fit/{key}"] - value).max() <= 0.05 * scale + 1e-6, key
