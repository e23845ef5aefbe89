"""Rules of the paper that the code must keep (docs/method.md lists where each one lives):
Table 2, Keras' optimizers, the log-mel statistics of the original training clips only, and
the DNN and fusion stages seeing no augmented clip."""

import jax.numpy as jnp
import numpy as np
import pytest

from merjax.config import PAPER_DATASETS, STAGES, paper_config, paper_hparams

# Table 2 of Louro et al. (2024): (batch size, optimizer, learning rate), typed in from the paper.
TABLE2 = {
    "merge_audio_complete": {"cnn": (32, "sgd", 1e-2), "dnn": (128, "sgd", 1e-2),
                             "fusion": (16, "adam", 1e-2)},
    "merge_audio_balanced": {"cnn": (32, "sgd", 1e-2), "dnn": (128, "adam", 1e-4),
                             "fusion": (32, "sgd", 1e-3)},
    "merge_bimodal_complete": {"cnn": (32, "sgd", 1e-2), "dnn": (128, "sgd", 1e-2),
                               "fusion": (64, "sgd", 1e-4)},
    "merge_bimodal_balanced": {"cnn": (32, "adam", 1e-3), "dnn": (32, "sgd", 1e-2),
                               "fusion": (64, "adam", 1e-3)},
}


def test_table2_all_twelve_values():
  assert set(PAPER_DATASETS) == set(TABLE2)
  checked = 0
  for dataset, stages in TABLE2.items():
    config = paper_config(dataset)
    for stage in STAGES:
      batch, optimizer, rate = stages[stage]
      for got in (paper_hparams(dataset, stage), config.stage(stage)):
        assert (got.batch_size, got.optimizer, got.learning_rate) == (batch, optimizer, rate)
        assert (got.max_epochs, got.patience, got.train_accuracy_stop) == (200, 15, 0.90)
      checked += 1
  assert checked == 12
  assert paper_hparams("merge:bimodal_balanced", "fusion").optimizer == "adam"


def _steps(optimizer: str, rate: float, params, grads):
  import optax

  from merjax.config import TrainConfig
  from merjax.train.state import make_optimizer
  tx = make_optimizer(TrainConfig(optimizer=optimizer, learning_rate=rate))
  params = jnp.asarray(params, jnp.float32)
  state = tx.init(params)
  out = []
  for g in grads:
    updates, state = tx.update(jnp.asarray(g, jnp.float32), state, params)
    params = optax.apply_updates(params, updates)
    out.append(np.asarray(params))
  return out


def test_sgd_is_plain_keras_sgd_without_momentum():
  first, second = _steps("sgd", 0.1, [1.0, -2.0], [[0.5, 1.0], [-0.25, 0.0]])
  np.testing.assert_allclose(first, [0.95, -2.1], rtol=1e-6)
  # With momentum the second step would still move the second weight.
  np.testing.assert_allclose(second, [0.975, -2.1], rtol=1e-6)


def test_adam_is_keras_adam_with_epsilon_1e_7():
  # Values of keras.optimizers.Adam(learning_rate=0.01) (beta_1 0.9, beta_2 0.999, epsilon
  # 1e-7 added to sqrt(v) before the bias correction), computed by hand. optax.adam with
  # eps=1e-7 would give 0.990099 for the first weight after one step, Adam with epsilon 1e-8
  # 0.990197.
  first, second = _steps("adam", 0.01, [1.0, -2.0, 0.5],
                         [[1e-5, 0.3, -2.0], [-3e-5, 0.1, 1.0]])
  np.testing.assert_allclose(first, [0.992402531, -2.009999895, 0.509999984], rtol=2e-6)
  np.testing.assert_allclose(second, [0.996895145, -2.018710447, 0.512663351], rtol=2e-6)


@pytest.fixture(scope="module")
def augmented(tmp_path_factory):
  """A tiny synthetic run with the paper's offline augmentation (power shift only: cheap, and
  it moves the dB level, so augmented clips in the statistics would show)."""
  from merjax.inputs.prepare import prepare_inputs
  from merjax.runs.demo import demo_config

  config = demo_config(seconds=3.0, seed=0, max_epochs=1)
  config = config.replace(augment=config.augment.replace(mode="offline",
                                                         transforms=("power_shift",)))
  inputs = prepare_inputs("synthetic", config=config, clips_per_quadrant=5, workers=1,
                          log=lambda line: None)
  return config, inputs


@pytest.mark.slow  # the fixture and the stages take ~40 s of CPU time
def test_mel_statistics_come_from_the_original_training_clips_only(augmented):
  from merjax.data.splits import stratified_split
  from merjax.data.synthetic import generate
  from merjax.inputs.log_mel import log_mels, mel_statistics

  config, inputs = augmented
  data = generate(clips_per_quadrant=5, seconds=3.0, seed=0)
  splits = stratified_split(data.labels, seed=0)
  assert np.array_equal(np.sort(inputs.song_ids["train"]),
                        np.sort(data.song_ids[splits == "train"]))
  mels = log_mels(data.waveforms, audio=config.audio, progress=False)
  mean, std = mel_statistics(mels[splits == "train"])
  assert inputs.mel_mean == pytest.approx(mean, abs=1e-3)
  assert inputs.mel_std == pytest.approx(std, abs=1e-3)
  everything = mel_statistics(mels)
  assert abs(everything[0] - mean) > 1e-2  # validation and test clips would change them
  # The augmented training set exists and has other statistics.
  cnn_mels = inputs.stage_data.cnn_train_mels
  assert cnn_mels is not None and len(cnn_mels) == 2 * len(inputs.stage_data.labels["train"])
  augmented_only = cnn_mels[len(inputs.stage_data.labels["train"]):] * std + mean
  assert abs(float(augmented_only.mean()) - mean) > 1e-2


@pytest.mark.slow
def test_dnn_and_fusion_never_see_augmented_clips(augmented, monkeypatch):
  from merjax import parallel
  from merjax.train import stages

  config, inputs = augmented
  data = inputs.stage_data
  n_train = len(data.labels["train"])
  seen = {}
  real = stages.train_classifier

  def spy(model, *, train, val, config, stage, **kwargs):
    seen[stage] = {"inputs": np.asarray(train["inputs"]).copy(),
                   "label": np.asarray(train["label"]).copy()}
    return real(model, train=train, val=val, config=config, stage=stage, **kwargs)

  monkeypatch.setattr(stages, "train_classifier", spy)
  model, _ = stages.train_hybrid(data, config=config, mesh=parallel.make_data_mesh(devices=1),
                                 mel_mean=inputs.mel_mean, mel_std=inputs.mel_std,
                                 feature_preprocessor=inputs.preprocessor, log=None)
  assert len(data.features["train"]) == n_train  # features of the original clips only
  np.testing.assert_array_equal(seen["dnn"]["inputs"], data.features["train"])
  np.testing.assert_array_equal(seen["dnn"]["label"], data.labels["train"])
  # The fusion trains on the frozen branches' embeddings of the original training clips.
  np.testing.assert_array_equal(seen["fusion"]["label"], data.labels["train"])
  np.testing.assert_allclose(
      seen["fusion"]["inputs"],
      model.embeddings(mels=data.mels["train"], features=data.features["train"]), rtol=1e-5,
      atol=1e-6)
