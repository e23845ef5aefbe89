"""One way to build a stage: train_hybrid and the tuner's trials share network, inputs and fit."""

import jax
import numpy as np
import pytest

from merjax import parallel
from merjax.batches.augmented import OnlineAugmentedBatches, OnlineTraining
from merjax.config import AudioConfig, AugmentConfig, Config, ModelConfig, TrainConfig
from merjax.models import CNN, DNN, Fusion
from merjax.train.stages import (
  StageData,
  frozen_embeddings,
  stage_network,
  stage_splits,
  train_classifier,
  train_hybrid,
)

# A small CNN on 32-frame log-mels: pools over mel bins only.
MODEL = ModelConfig(conv_filters=8, conv_pools=((1, 2),) * 4, cnn_embedding=16)
QUICK = TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=8, max_epochs=2,
                    patience=5, train_accuracy_stop=None, seed=3)
CONFIG = Config(model=MODEL, cnn=QUICK, dnn=QUICK.replace(optimizer="sgd", learning_rate=1e-2),
                fusion=QUICK.replace(seed=4))
ONE_DEVICE = parallel.make_data_mesh(devices=1)


def _stage_data(seed=0):
  rng = np.random.default_rng(seed)
  labels = {s: (np.arange(n) % 4).astype(np.int32)
            for s, n in (("train", 16), ("validate", 8), ("test", 8))}
  mels = {s: (rng.normal(size=(len(y), 128, 32)) + 0.5 * y[:, None, None]).astype(np.float32)
          for s, y in labels.items()}
  features = {s: (rng.normal(size=(len(y), 10)) + y[:, None]).astype(np.float32)
              for s, y in labels.items()}
  return StageData(mels=mels, features=features, labels=labels)


def _leaves(tree):
  return jax.tree.leaves(jax.device_get(tree))


def test_stage_network_and_inputs():
  assert isinstance(stage_network("cnn", MODEL), CNN)
  assert isinstance(stage_network("dnn", MODEL), DNN)
  assert isinstance(stage_network("fusion", MODEL), Fusion)
  with pytest.raises(ValueError, match="stage must be one of"):
    stage_network("hybrid", MODEL)
  data = _stage_data()
  dnn = stage_splits(data, "dnn")
  assert sorted(dnn) == ["train", "validate"]
  assert dnn["validate"]["inputs"] is data.features["validate"]
  with pytest.raises(ValueError, match="embeddings"):
    stage_splits(data, "fusion")


def test_a_tune_trial_trains_the_stage_exactly_as_train_hybrid(monkeypatch, tmp_path):
  """The trial (Ray's API stubbed) and train_hybrid build the CNN and the fusion the same way:
  same network, inputs, batches and fit give bit-identical weights."""
  from ray import tune

  from merjax.train.checkpoint import load_variables
  from merjax.tune.trial import TrialSetup, run_trial

  data = _stage_data()
  model, fits = train_hybrid(data, config=CONFIG, mesh=ONE_DEVICE, mel_mean=0.0, mel_std=1.0,
                             log=None)
  embeddings = frozen_embeddings(data, config=CONFIG, cnn=model.cnn, dnn=model.dnn)

  class Context:
    def get_trial_dir(self):
      return str(tmp_path)

  for stage, splits in (("cnn", stage_splits(data, "cnn")),
                        ("fusion", stage_splits(data, "fusion", embeddings=embeddings))):
    reports = []

    def report(metrics, checkpoint=None, reports=reports):
      variables = None
      if checkpoint is not None:  # read while the trial's temporary directory exists
        with checkpoint.as_directory() as directory:
          variables = load_variables(directory)
      reports.append((metrics, variables))

    monkeypatch.setattr(tune, "get_checkpoint", lambda: None)
    monkeypatch.setattr(tune, "get_context", Context)
    monkeypatch.setattr(tune, "report", report)
    train = CONFIG.stage(stage)
    point = {"optimizer": train.optimizer, "learning_rate": train.learning_rate,
             "batch_size": train.batch_size}
    run_trial(point, setup=TrialSetup(stage=stage, model=MODEL, train=train), data=splits)
    fit = fits[stage]
    assert [m["val_accuracy"] for m, _ in reports] == [h["val_accuracy"] for h in fit.history]
    assert [m["train_loss"] for m, _ in reports] == [h["train_loss"] for h in fit.history]
    best = [variables for _, variables in reports if variables is not None][-1]
    assert _leaves(best["params"]) and len(_leaves(best["params"])) == len(
        _leaves(fit.state.params))
    for a, b in zip(_leaves(best["params"]), _leaves(fit.state.params)):
      np.testing.assert_array_equal(a, b)


def test_online_augmentation_is_a_description_the_stage_builds_batches_from():
  audio = AudioConfig(clip_seconds=1.0)
  rng = np.random.default_rng(0)
  waveforms = (0.1 * rng.normal(size=(4, audio.clip_samples))).astype(np.float32)
  labels = np.arange(4, dtype=np.int32)
  mels = rng.normal(size=(4, 128, audio.frames)).astype(np.float32)
  augment = AugmentConfig(mode="online", seed=1, transforms=("power_shift",))
  training = OnlineTraining(waveforms=waveforms, labels=labels, train_mels=mels, audio=audio,
                            augment=augment, mel_mean=0.0, mel_std=1.0)
  with pytest.raises(AttributeError):  # frozen: a plain value, not a closure to call
    training.waveforms = waveforms[:2]
  batches = training.batches(batch_size=4, seed=0, mesh=ONE_DEVICE)
  assert isinstance(batches, OnlineAugmentedBatches) and len(batches) == 2  # 4 clips x 2
  apply = object()
  assert training.front_end(apply, mesh=ONE_DEVICE) is apply
  result = train_classifier(CNN(MODEL), train={"inputs": mels, "label": labels},
                            val={"inputs": mels, "label": labels}, config=QUICK,
                            mesh=ONE_DEVICE, stage="cnn", log=None, cnn_training=training)
  assert len(result.history) == 2
  assert result.history[0]["train_accuracy"] >= 0  # trained over the 8 examples of each epoch
