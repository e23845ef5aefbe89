"""Pod-scale options: --batch-size, --dtype, --cnn-impl, and JAX's GPU memory variables."""

import os
import subprocess
import sys

import pytest

from merjax.cli import build_parser
from merjax.commands._options import config_from_args, parse_batch_sizes
from merjax.config import paper_config, resolve_cnn_impl
from merjax.errors import MerjaxError
from merjax.parallel import platform as runtime
from merjax.tune.search import stage_search_config
from merjax.tune.space import SearchSpace


def test_one_batch_size_for_every_stage_or_per_stage():
  assert parse_batch_sizes("256") == {"cnn": 256, "dnn": 256, "fusion": 256}
  assert parse_batch_sizes("cnn=256, dnn=512") == {"cnn": 256, "dnn": 512}


@pytest.mark.parametrize("text, message", [
    ("0", "expected a positive integer, got '0'"),
    ("big", "expected a positive integer, got 'big'"),
    ("cnn=-4", "--batch-size cnn: expected a positive integer, got '-4'"),
    ("cnn=32,head=8", "unknown stage 'head'"),
    ("cnn=32,cnn=64", "names stage 'cnn' twice"),
])
def test_bad_batch_sizes_are_named(text, message):
  with pytest.raises(MerjaxError, match=message.replace("(", r"\(").replace(")", r"\)")):
    parse_batch_sizes(text)


def _args(*argv):
  return build_parser().parse_args(list(argv))


def test_train_options_reach_the_config():
  args = _args("train", "--dataset", "merge:audio_balanced", "--out", "m", "--batch-size",
               "cnn=256", "--dtype", "bfloat16", "--cnn-impl", "plain", "--cnn-inputs",
               "waveforms")
  config = config_from_args(args)
  table2 = paper_config("merge_audio_balanced")
  assert config.cnn.batch_size == 256
  assert (config.dnn.batch_size, config.fusion.batch_size) == (table2.dnn.batch_size,
                                                               table2.fusion.batch_size)
  assert (config.model.dtype, config.model.cnn_impl) == ("bfloat16", "plain")
  assert config.augment.pipeline == "waveforms"
  defaults = config_from_args(_args("train", "--dataset", "merge:audio_balanced", "--out", "m"))
  assert defaults.model == table2.model and defaults.model.cnn_impl == "auto"
  assert defaults.augment.pipeline == "auto"
  assert [defaults.stage(s).batch_size for s in ("cnn", "dnn", "fusion")] == [
      table2.stage(s).batch_size for s in ("cnn", "dnn", "fusion")]


def test_tune_searches_every_batch_size_unless_one_is_fixed():
  args = _args("tune", "--dataset", "synthetic", "--out", "t", "--batch-size", "cnn=512")
  tune = config_from_args(args).tune
  assert tune.fixed_batch_sizes == (("cnn", 512),)
  assert SearchSpace.from_config(stage_search_config(tune, "cnn")).batch_sizes == (512,)
  assert stage_search_config(tune, "dnn").batch_sizes == (16, 32, 64, 128, 256)


def test_cnn_impl_auto_is_fast_on_cpu_and_plain_elsewhere():
  assert resolve_cnn_impl("auto", backend="cpu") == "fast"
  assert resolve_cnn_impl("auto", backend="gpu") == "plain"
  assert resolve_cnn_impl("auto", backend="tpu") == "plain"
  assert resolve_cnn_impl("fast", backend="gpu") == "fast"


def test_batch_that_does_not_divide_the_devices_is_refused_before_any_work(tmp_path):
  env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
         "JAX_PLATFORMS": "cpu"}
  out = tmp_path / "model"
  proc = subprocess.run(
      [sys.executable, "-m", "merjax.cli", "train", "--dataset", "synthetic", "--out", str(out),
       "--batch-size", "cnn=12"], capture_output=True, text=True, env=env, timeout=120)
  assert proc.returncode == 2, proc.stderr
  lines = proc.stderr.strip().splitlines()
  assert len(lines) == 1, proc.stderr
  assert "the cnn stage's batch size 12 does not divide across the 8 devices" in lines[0]
  assert "--batch-size 16" in lines[0]
  assert not out.exists() and "synthetic" not in proc.stdout.lower()


def test_gpu_memory_variables_use_the_current_names_and_keep_the_users():
  environ = {}
  written = runtime.set_gpu_memory_defaults(environ, fraction="0.450", preallocate="false")
  # jax >= 0.10 reads XLA_CLIENT_MEM_FRACTION and raises when the deprecated name is also set.
  assert environ["XLA_CLIENT_MEM_FRACTION"] == "0.450"
  assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in environ
  assert written == environ and len(environ) == 2
  users = {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.2", "XLA_PYTHON_CLIENT_ALLOCATOR": "default"}
  environ = dict(users)
  assert runtime.set_gpu_memory_defaults(environ, fraction="0.9", allocator="platform") == {}
  assert environ == users
  with pytest.raises(ValueError, match="unknown memory setting 'pool'"):
    runtime.set_gpu_memory_defaults({}, pool="1")


def test_a_model_trained_with_one_execution_setting_predicts_with_another(tmp_path):
  import numpy as np

  from merjax.config import Config
  from merjax.inference.artefact import HybridModel
  from merjax.inference.directory import load_model, save_model
  from merjax.inputs.log_mel import log_mels

  config = Config()
  config = config.replace(audio=config.audio.replace(clip_seconds=3.0),
                          model=config.model.replace(cnn_impl="fast"))
  rng = np.random.default_rng(0)
  clips = (0.1 * rng.standard_normal((3, config.audio.clip_samples))).astype(np.float32)
  save_model(HybridModel.initialise(config, waveforms=clips), tmp_path / "model")
  mels = load_model(tmp_path / "model").normalise_mels(log_mels(clips, audio=config.audio))
  logits = {}
  for impl, dtype in (("fast", "float32"), ("plain", "float32"), ("plain", "bfloat16")):
    model = load_model(tmp_path / "model", cnn_impl=impl, dtype=dtype)
    assert (model.config.model.cnn_impl, model.config.model.dtype) == (impl, dtype)
    logits[impl, dtype] = model.logits(mels=mels, which="cnn")
  np.testing.assert_allclose(logits["plain", "float32"], logits["fast", "float32"], atol=1e-4)
  np.testing.assert_allclose(logits["plain", "bfloat16"], logits["fast", "float32"], atol=0.1)
  with pytest.raises(MerjaxError, match="cnn_impl must be one of"):
    load_model(tmp_path / "model", cnn_impl="fastest")
