"""One checkpoint layout: training work dirs, tune trials and the model directory."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from merjax import parallel
from merjax.batches.split import DeviceBatches
from merjax.config import Config, ModelConfig, TrainConfig
from merjax.errors import MerjaxError
from merjax.models import DNN
from merjax.train import create_state, fit
from merjax.train.checkpoint import Checkpointer, load_variables, restore_run

CONFIG = TrainConfig(optimizer="adam", learning_rate=3e-3, batch_size=8, max_epochs=2,
                     patience=50, train_accuracy_stop=None)
SETTINGS = {"stage": "dnn", **CONFIG.to_dict()}
MODEL = ModelConfig(dnn_hidden=(32, 16, 8))  # small, so that it compiles fast


def _assert_equal_trees(a, b):
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    np.testing.assert_array_equal(x, y)


def _state(config=CONFIG, model_config=None):
  model = DNN(model_config or MODEL)
  return create_state(model, jnp.zeros((1, 12), jnp.float32), config, rng=jax.random.key(0))


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory):
  """A finished two-epoch ``fit`` work dir, and the states it passed through."""
  rng = np.random.default_rng(0)
  y = (np.arange(40) % 4).astype(np.int32)
  x = rng.normal(size=(40, 12)).astype(np.float32) + y[:, None]
  mesh = parallel.make_data_mesh(devices=1)
  train = DeviceBatches({"inputs": x[:32], "label": y[:32]}, batch_size=8, shuffle=True, seed=1,
                        mesh=mesh)
  val = DeviceBatches({"inputs": x[32:], "label": y[32:]}, batch_size=8, shuffle=False, mesh=mesh)
  seen = []
  directory = tmp_path_factory.mktemp("checkpoint") / "work"
  result = fit(_state(), train_batches=train.epoch, val_batches=val.epoch, config=CONFIG,
               rng=jax.random.key(1), mesh=mesh, stage="dnn", log=None, workdir=directory,
               hooks=[lambda epoch, record, state, stopper: seen.append(jax.device_get(state))])
  return directory, result, seen


def test_a_work_dir_and_a_trial_dir_restore_through_the_same_function(work_dir, tmp_path):
  directory, result, seen = work_dir
  restored = restore_run(directory, state=_state(), rng=jax.random.key(1), config=SETTINGS)
  assert restored.next_epoch == 2 and len(restored.history) == 2
  assert restored.stopper.epochs_seen == 2
  _assert_equal_trees(jax.device_get(seen[-1].params), restored.state.params)
  _assert_equal_trees(jax.device_get(seen[-1].opt_state), restored.state.opt_state)
  _assert_equal_trees(jax.device_get(result.state.params), restored.best_state.params)
  assert jax.random.key_data(restored.rng).tolist() == jax.random.key_data(
      jax.random.key(1)).tolist()
  # A tune trial writes the same checkpoint (the state of its best epoch) into Ray's directory.
  trial = tmp_path / "trial"
  with Checkpointer(trial, config=SETTINGS) as checkpoints:
    checkpoints.save(next_epoch=1, state=seen[0], best_state=seen[0], rng=jax.random.key(1),
                     stopper=restored.stopper, history=[])
  from_trial = restore_run(trial, state=_state(), rng=jax.random.key(1), config=SETTINGS)
  assert from_trial.next_epoch == 1
  _assert_equal_trees(jax.device_get(seen[0].params), from_trial.state.params)
  _assert_equal_trees(jax.device_get(seen[0].params), load_variables(trial)["params"])
  _assert_equal_trees(jax.device_get(result.state.params), load_variables(directory)["params"])


def test_a_run_that_does_not_fit_is_refused_in_one_line(work_dir, tmp_path):
  directory = work_dir[0]
  with pytest.raises(MerjaxError, match="other settings .*batch_size"):
    restore_run(directory, state=_state(), rng=jax.random.key(1),
                config={**SETTINGS, "batch_size": 16})
  narrower = _state(model_config=MODEL.replace(dnn_hidden=(32, 16, 4)))
  with pytest.raises(MerjaxError, match=f"{directory}/2 does not fit this model/optimizer: "
                     r"best_state.opt_state.0.mu.body.mlp.Dense_2.bias has shape \(8,\), "
                     r"expected \(4,\)"):
    restore_run(directory, state=narrower, rng=jax.random.key(1))
  sgd = _state(config=CONFIG.replace(optimizer="sgd"))
  with pytest.raises(MerjaxError, match="best_state.opt_state.0.count has shape"):
    restore_run(directory, state=sgd, rng=jax.random.key(1))
  with pytest.raises(MerjaxError, match="holds no merjax training checkpoint"):
    restore_run(tmp_path / "nothing", state=_state(), rng=jax.random.key(1))
  assert restore_run(tmp_path / "nothing", state=_state(), rng=jax.random.key(1),
                     missing_ok=True) is None


@pytest.mark.parametrize("damage", ["meta", "arrays", "no arrays"])
def test_a_damaged_checkpoint_is_named_in_one_line(work_dir, tmp_path, damage):
  directory = tmp_path / "work"
  shutil.copytree(work_dir[0], directory)
  step = directory / "2"
  if damage == "meta":
    (step / "meta" / "metadata").write_text("{not json")
  elif damage == "arrays":
    chunks = list((step / "arrays").rglob("d/*"))
    assert chunks
    for chunk in chunks:
      chunk.write_bytes(b"garbage")
  else:
    shutil.rmtree(step / "arrays")
  with pytest.raises(MerjaxError) as error:
    restore_run(directory, state=_state(), rng=jax.random.key(1))
  message = str(error.value)
  assert f"the checkpoint {step} is damaged" in message and "\n" not in message


def test_a_model_directory_roundtrip_gives_identical_variables(tmp_path):
  from merjax.features import FeaturePreprocessor
  from merjax.inference.artefact import HybridModel
  from merjax.inference.directory import load_model, save_model

  rng = np.random.default_rng(0)

  def weights(*shape):
    return rng.normal(size=shape).astype(np.float32)

  features = FeaturePreprocessor().fit(rng.normal(size=(8, 3)), ["a", "b", "c"])
  model = HybridModel(
      config=Config(), mel_mean=-3.5, mel_std=1.25, feature_preprocessor=features,
      cnn={"params": {"body": {"w": weights(3, 3, 1, 4)}, "head": {"w": weights(4, 4)}},
           "batch_stats": {"body": {"mean": weights(4), "var": weights(4)}}},
      dnn={"params": {"body": {"w": weights(3, 5)}, "head": {"w": weights(5, 4)}}},
      fusion={"params": {"w": weights(9, 4), "b": weights(4)}})
  path = save_model(model, tmp_path / "model")
  assert sorted(p.name for p in path.iterdir()) == [
      "config.json", "preprocessing.json", "variables"]
  loaded = load_model(path)
  for stage in ("cnn", "dnn", "fusion"):
    _assert_equal_trees(jax.device_get(getattr(model, stage)), getattr(loaded, stage))
  assert (loaded.mel_mean, loaded.mel_std) == (model.mel_mean, model.mel_std)
  assert loaded.feature_preprocessor.to_dict() == model.feature_preprocessor.to_dict()
  assert loaded.config == model.config
  # A model's variables are not a training run, and a run is not a model directory.
  with pytest.raises(MerjaxError, match="holds a 'model' checkpoint, not a 'run' one"):
    load_variables(path / "variables")
  with pytest.raises(MerjaxError, match="not a merjax model directory .missing config.json"):
    load_model(tmp_path)
  (path / "preprocessing.json").write_text("{")
  with pytest.raises(MerjaxError, match="preprocessing.json is damaged"):
    load_model(path)


def test_create_state_starts_from_given_variables():
  model = DNN(MODEL)
  fresh = _state()
  variables = jax.tree.map(lambda v: v + 1, fresh.variables)
  state = create_state(model, jnp.zeros((1, 12)), CONFIG, variables=variables)
  _assert_equal_trees(variables["params"], state.params)
  assert int(state.step) == 0
  _assert_equal_trees(fresh.tx.init(variables["params"]), state.opt_state)
  assert state.apply_fn == fresh.apply_fn  # the same module: the same compiled step
  with pytest.raises(ValueError, match="either rng .* or variables"):
    create_state(model, jnp.zeros((1, 12)), CONFIG, rng=jax.random.key(0), variables=variables)
