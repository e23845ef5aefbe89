"""One config path: the dataset -> Table 2 preset lookup, seeds, and ``--set`` overrides."""

import jax
import numpy as np
import pytest

from merjax.cli import build_parser
from merjax.commands._options import config_from_args
from merjax.config import (
  DEFAULT_PRESET,
  PAPER_DATASETS,
  SEEDED,
  STAGES,
  Config,
  Override,
  TrainConfig,
  derive_seed,
  paper_config,
  paper_hparams,
  parse_override,
  preset_for,
  with_overrides,
)
from merjax.data.merge import SPLIT_VARIANTS, SUBSETS
from merjax.errors import MerjaxError

# -- dataset -> preset ----------------------------------------------------------------------------


@pytest.mark.parametrize("subset", SUBSETS)
def test_every_merge_name_maps_to_its_own_preset(subset):
  preset = f"merge_{subset}"
  assert preset in PAPER_DATASETS
  names = [f"merge:{subset}", preset, f"MERGE:{subset.upper()}",
           *(f"merge:{subset}:{split}" for split in SPLIT_VARIANTS)]
  for name in names:
    assert preset_for(name) == preset, name
    assert paper_config(name) == paper_config(preset=preset), name


def test_presets_differ_as_table2_does():
  # audio_complete's fusion is Adam 1e-2 in batches of 16; audio_balanced's SGD 1e-3 of 32.
  assert paper_config("merge:audio_complete:40_30_30").fusion.optimizer == "adam"
  assert paper_config("merge:audio_complete:40_30_30").fusion.batch_size == 16
  assert paper_config("merge:audio_balanced:40_30_30").fusion.optimizer == "sgd"
  assert paper_hparams("merge:bimodal_balanced", "cnn").optimizer == "adam"


@pytest.mark.parametrize("dataset", ["4qaed", "folder:mine", "synthetic"])
def test_datasets_outside_merge_take_the_documented_default(dataset):
  assert preset_for(dataset) == DEFAULT_PRESET == "merge_audio_balanced"


@pytest.mark.parametrize("dataset", ["merge:lyrics_balanced", "merge:audio", "merge_audio"])
def test_merge_name_without_a_preset_is_named_with_the_presets(dataset):
  with pytest.raises(MerjaxError) as error:
    preset_for(dataset)
  message = str(error.value)
  assert f"no Table 2 preset for dataset {dataset!r}" in message
  assert all(preset in message for preset in PAPER_DATASETS)


def test_hparams_flag_picks_a_preset_and_refuses_an_unknown_one():
  args = build_parser().parse_args(["train", "--dataset", "folder:x", "--out", "m",
                                    "--hparams", "merge_bimodal_complete"])
  assert config_from_args(args).fusion == paper_config(preset="merge_bimodal_complete").fusion
  with pytest.raises(MerjaxError, match="unknown Table 2 preset 'merge'; presets: merge_audio"):
    paper_config(preset="merge")


# -- seeds ----------------------------------------------------------------------------------------


def test_each_consumer_gets_its_own_seed_from_config_seed():
  config = Config(seed=3)
  seeds = [config.stage(s).seed for s in STAGES] + [config.augment.seed, config.tune.seed]
  assert seeds == [derive_seed(3, consumer) for consumer in SEEDED]
  assert len(set(seeds)) == len(SEEDED)  # independent streams per stage
  assert all(0 <= seed < 2**31 for seed in seeds)
  assert seeds != [Config(seed=4).stage(s).seed for s in STAGES] + [
      Config(seed=4).augment.seed, Config(seed=4).tune.seed]
  # A section's own seed has no effect inside a Config: it is derived again.
  assert Config(seed=3, cnn=TrainConfig(seed=99)).cnn.seed == derive_seed(3, "cnn")
  assert config.replace(dnn=config.dnn.replace(batch_size=8)).dnn.seed == config.dnn.seed


def test_data_seed_is_independent_of_the_model_seed():
  base = Config(seed=5)
  other_data = base.replace(data_seed=1)
  for name in (*STAGES, "augment", "tune"):
    assert getattr(other_data, name) == getattr(base, name)
  assert base.replace(seed=6).data_seed == base.data_seed


def test_data_seed_changes_the_synthetic_split_and_not_the_model():
  from merjax.inputs.prepare import _load_clips
  from merjax.models import DNN
  from merjax.train.state import create_state

  def split(config):
    _, labels, splits, _, _ = _load_clips("synthetic", config=config, data_dir=None,
                                          clips_per_quadrant=5, log=lambda line: None)
    return labels, splits

  short = with_overrides(Config(), [Override("audio.clip_seconds", 0.5)])
  labels, splits = split(short)
  again_labels, again = split(short.replace(seed=7))  # another model seed: the same data
  np.testing.assert_array_equal(splits, again)
  np.testing.assert_array_equal(labels, again_labels)
  assert not np.array_equal(split(short.replace(data_seed=1))[1], splits)

  def init(config):
    state = create_state(DNN(config.model), np.zeros((1, 12), np.float32), config.dnn,
                         rng=jax.random.key(config.dnn.seed))
    return jax.tree.leaves(state.params)

  for a, b in zip(init(short), init(short.replace(data_seed=1))):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(init(short), init(short.replace(seed=1))))


def test_same_seed_trains_the_same_weights():
  from merjax import parallel
  from merjax.models import DNN
  from merjax.train import train_classifier

  rng = np.random.default_rng(0)
  x = rng.standard_normal((48, 12)).astype(np.float32)
  y = (x[:, 0] > 0).astype(np.int32) + 2 * (x[:, 1] > 0).astype(np.int32)

  def trained(seed):
    config = Config(seed=seed)
    stage = config.dnn.replace(batch_size=16, max_epochs=2, train_accuracy_stop=None)
    result = train_classifier(DNN(config.model), train={"inputs": x[:32], "label": y[:32]},
                              val={"inputs": x[32:], "label": y[32:]}, config=stage,
                              stage="dnn", log=None,
                              mesh=parallel.make_data_mesh(devices=1))
    return jax.tree.leaves(jax.device_get(result.state.params))

  first, again, other = trained(2), trained(2), trained(3)
  for a, b in zip(first, again):
    np.testing.assert_array_equal(a, b)
  assert any(not np.array_equal(a, b) for a, b in zip(first, other))


# -- overrides ------------------------------------------------------------------------------------


def test_overrides_are_parsed_by_field_type():
  config = with_overrides(Config(), [parse_override(text) for text in (
      "cnn.batch_size=256", "model.dnn_dropout=0.2", "dnn.learning_rate=1e-3",
      "model.dtype=bfloat16", "fusion.train_accuracy_stop=none", "augment.transforms=pitch_shift",
      "model.dnn_hidden=64, 32", "model.conv_pools=((2, 2), (3, 2))", "tune.trials=3",
      "tune.startup_trials=2", "tune.fixed_batch_sizes=(('cnn', 64),)", "seed=4", "data_seed=2",
      "audio.top_db=none", "audio.fmax=8000")])
  assert config.cnn.batch_size == 256 and isinstance(config.cnn.batch_size, int)
  assert config.model.dnn_dropout == 0.2 and config.dnn.learning_rate == 1e-3
  assert config.model.dtype == "bfloat16" and config.fusion.train_accuracy_stop is None
  assert config.augment.transforms == ("pitch_shift",)
  assert config.model.dnn_hidden == (64, 32)
  assert config.model.conv_pools == ((2, 2), (3, 2))
  assert (config.tune.trials, config.tune.startup_trials) == (3, 2)
  assert config.tune.fixed_batch_sizes == (("cnn", 64),)
  assert (config.seed, config.data_seed) == (4, 2)
  assert config.audio.top_db is None and config.audio.fmax == 8000.0
  # everything not named keeps its value
  assert config.dnn.batch_size == Config().dnn.batch_size
  assert config.model.fusion_hidden == Config().model.fusion_hidden


@pytest.mark.parametrize("text, bool_value", [("true", True), ("False", False), ("1", True)])
def test_boolean_values(text, bool_value):
  from merjax.config import _parse
  assert _parse(text, bool, key="k") is bool_value
  with pytest.raises(MerjaxError, match="expected true or false, got 'maybe'"):
    _parse("maybe", bool, key="k")


@pytest.mark.parametrize("text, message", [
    ("cnn.batchsize=256", "unknown config key 'cnn.batchsize'; cnn has: optimizer, "
     "learning_rate, batch_size, max_epochs, patience, train_accuracy_stop"),
    ("modle.dnn_dropout=0.2", "unknown config key 'modle.dnn_dropout'; the config has: seed, "
     "data_seed, audio.*, augment.*, model.*, cnn.*, dnn.*, fusion.*, tune.*"),
    ("sed=1", "unknown config key 'sed'; the config has: seed, data_seed, audio.*"),
    ("cnn.batch_size=big", "config key 'cnn.batch_size': expected an integer, got 'big'"),
    ("cnn.batch_size=2.5", "config key 'cnn.batch_size': expected an integer, got '2.5'"),
    ("model.dtype=float16", "config key 'model.dtype': expected one of float32, bfloat16, "
     "got 'float16'"),
    ("fusion.train_accuracy_stop=high", "config key 'fusion.train_accuracy_stop': expected a "
     "number or none, got 'high'"),
    ("model.conv_pools=((2, 2), (3,)", "config key 'model.conv_pools': expected a tuple"),
    ("cnn.seed=3", "config key 'cnn.seed' is derived from 'seed'"),
    ("features_table=x", "config key 'features_table' is set with --table"),
    ("cnn.batch_size", "--set expects KEY=VALUE (e.g. cnn.batch_size=256), got 'cnn.batch_size'"),
    ("cnn.batch_size=0", "--set cnn.batch_size=0: batch_size must be positive, got 0"),
    ("tune.trials=0", "--set tune.trials=0: trials must be at least 1, got 0"),
    ("seed=-1", "--set seed=-1: seed must be a non-negative integer, got -1"),
])
def test_bad_overrides_are_named(text, message):
  with pytest.raises(MerjaxError) as error:
    with_overrides(Config(), [parse_override(text)])
  assert message in str(error.value)


def test_flags_are_sugar_for_overrides_and_set_comes_last():
  args = build_parser().parse_args([
      "train", "--dataset", "merge:audio_complete:40_30_30", "--out", "m", "--batch-size",
      "64", "--max-epochs", "7", "--seed", "3", "--dtype", "bfloat16", "--set",
      "cnn.batch_size=128", "--set", "model.dnn_dropout=0.2", "--set", "data_seed=9"])
  config = config_from_args(args)
  table2 = paper_config("merge_audio_complete")
  assert (config.cnn.batch_size, config.dnn.batch_size, config.fusion.batch_size) == (128, 64, 64)
  assert {config.stage(s).max_epochs for s in STAGES} == {7}
  assert (config.seed, config.data_seed, config.model.dtype) == (3, 9, "bfloat16")
  assert config.model.dnn_dropout == 0.2
  assert config.fusion.optimizer == table2.fusion.optimizer == "adam"
  with pytest.raises(MerjaxError, match="--max-epochs 0: max_epochs must be positive, got 0"):
    config_from_args(build_parser().parse_args(
        ["train", "--dataset", "synthetic", "--out", "m", "--max-epochs", "0"]))


def test_tune_takes_set_and_a_fixed_batch_size_out_of_the_search():
  args = build_parser().parse_args(["tune", "--dataset", "synthetic", "--out", "t",
                                    "--batch-size", "dnn=64", "--trials", "4", "--set",
                                    "tune.searcher=random", "--set", "tune.max_concurrent=2"])
  tune = config_from_args(args).tune
  assert (tune.trials, tune.searcher, tune.max_concurrent) == (4, "random", 2)
  assert tune.fixed_batch_sizes == (("dnn", 64),)


def test_cli_refuses_a_bad_override_in_one_line(capsys, tmp_path):
  from merjax.cli import main
  assert main(["train", "--dataset", "synthetic", "--out", str(tmp_path / "m"), "--set",
               "model.dnn_dropuot=0.2"]) == 2
  err = capsys.readouterr().err.strip().splitlines()
  assert len(err) == 1 and "unknown config key 'model.dnn_dropuot'; model has: " in err[0]
  assert "dnn_dropout" in err[0] and not (tmp_path / "m").exists()


def test_demo_config_takes_overrides():
  from merjax.runs.demo import demo_config
  config = demo_config(seed=2, max_epochs=3, overrides=[parse_override("dnn.max_epochs=5")])
  assert (config.seed, config.data_seed, config.augment.mode) == (2, 2, "none")
  assert (config.cnn.max_epochs, config.dnn.max_epochs) == (3, 5)
