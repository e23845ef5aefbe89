"""Data parallelism: 8 virtual devices against 1, mesh selection, streamed batches, bf16.

The 8-device comparison runs in a fresh interpreter (``_parallel_worker.py``): the CPU
device count is fixed when jax starts, and the other tests expect one device.
"""

import json

import _parallel_worker as worker
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from merjax import parallel
from merjax.batches.split import DeviceBatches, StreamedBatches
from merjax.config import ModelConfig, TrainConfig
from merjax.errors import MerjaxError
from merjax.models import CNN, DNN
from merjax.train import create_state, train_classifier
from merjax.train.steps import jit_train_step


def _assert_trees_close(a, b, *, atol, rtol=1e-5, what=""):
  assert sorted(a) == sorted(b), what
  for key in a:
    np.testing.assert_allclose(a[key], b[key], rtol=rtol, atol=atol, err_msg=f"{what}{key}")


def test_eight_devices_match_one_device(tmp_path):
  out = tmp_path / "devices.npz"
  worker.run("devices", "--devices", "8", "--out", str(out))
  r = np.load(out)
  for name in ("cnn", "dnn"):
    single = {k[len(f"single/{name}"):]: r[k] for k in r.files if k.startswith(f"single/{name}[")}
    mesh = {k[len(f"mesh/{name}"):]: r[k] for k in r.files if k.startswith(f"mesh/{name}[")}
    assert single and any("kernel" in k for k in single)
    if name == "cnn":  # global BatchNorm statistics: same running mean/var as one device
      assert any("batch_stats" in k and "var" in k for k in single)
    # Three steps from the same start: any per-device (non-global) statistic or a missing
    # gradient all-reduce would differ by orders of magnitude more than float rounding. The
    # DNN trains with Keras' Adam, whose near-sign-sized steps (about the learning rate, 1e-3)
    # let a rounding difference in a near-zero gradient move a weight by up to ~1e-4.
    _assert_trees_close(single, mesh, atol=1e-5 if name == "cnn" else 1e-4, what=f"{name} ")
    assert str(r[f"mesh/{name}/batch_sharding"]) == "P('data',)"
    assert bool(r[f"mesh/{name}/param_replicated"])
  # The training loop itself (DeviceBatches on the mesh, padded last batches).
  fit_single = {k: r[k] for k in r.files if k.startswith("single/fit[")}
  fit_mesh = {k.replace("mesh/", "single/"): r[k] for k in r.files if k.startswith("mesh/fit[")}
  _assert_trees_close(fit_single, fit_mesh, atol=1e-5, what="fit ")
  h_single, h_mesh = (json.loads(str(r[f"{k}/fit/history"])) for k in ("single", "mesh"))
  assert len(h_single) == len(h_mesh) == 3
  for a, b in zip(h_single, h_mesh):
    assert a.keys() == b.keys()
    np.testing.assert_allclose([a[k] for k in a], [b[k] for k in a], rtol=1e-5)
  # Evaluation pads 8 validation clips to 16 (two per device) and leaves the padding out.
  np.testing.assert_allclose(r["mesh/fit/val_metrics"], r["single/fit/val_metrics"], rtol=1e-5)
  assert "batch size 12 does not divide across the 8 devices" in str(r["error"])


def test_resolve_mesh_choices():
  mesh = parallel.resolve_mesh("auto")  # one device: a mesh of one, never the plain step
  assert mesh.axis_names == ("data",) and parallel.data_size(mesh) == 1
  assert mesh.axis_types == (jax.sharding.AxisType.Auto,)
  assert parallel.data_size(parallel.resolve_mesh(1)) == 1
  assert parallel.resolve_mesh(mesh) is mesh
  with pytest.raises(MerjaxError, match="asked for 2 devices, but 1"):
    parallel.resolve_mesh(2)
  with pytest.raises(MerjaxError, match="mesh must be"):
    parallel.resolve_mesh("all")
  assert parallel.round_up(12, 8) == 16 and parallel.round_up(16, 8) == 16


def test_one_device_mesh_fit_equals_the_plain_jitted_steps():
  """fit over a mesh of one device is the pure step applied to the same batches in order."""
  rng = np.random.default_rng(0)
  y = (np.arange(40) % 4).astype(np.int32)
  x = (rng.normal(size=(4, 12))[y] * 2 + rng.normal(size=(40, 12))).astype(np.float32)
  split = dict(train={"inputs": x[:30], "label": y[:30]}, val={"inputs": x[30:], "label": y[30:]})
  config = TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=8, max_epochs=2,
                       train_accuracy_stop=None)
  mesh = parallel.make_data_mesh(devices=1)
  last = {}

  def keep_last(epoch, record, state, stopper):
    last["params"] = jax.device_get(state.params)

  train_classifier(DNN(ModelConfig()), config=config, mesh=mesh, stage="dnn", log=None,
                   hooks=[keep_last], **split)
  # The same seeds as train_classifier: the initialisation key, then the dropout key.
  init_rng, dropout_rng = jax.random.split(jax.random.key(config.seed))
  state = create_state(DNN(ModelConfig()), x[:1], config, rng=init_rng)
  batches = DeviceBatches(split["train"], batch_size=8, shuffle=True, seed=config.seed, mesh=mesh)
  for epoch in range(2):
    for batch in batches.epoch(epoch):
      state, _ = jit_train_step(state, batch, dropout_rng)
  for a, b in zip(jax.tree.leaves(jax.device_get(state.params)), jax.tree.leaves(last["params"])):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_device_batches_equal_streamed_batches_on_a_mesh():
  rng = np.random.default_rng(0)
  arrays = {"inputs": rng.normal(size=(30, 12)).astype(np.float32),
            "label": (np.arange(30) % 4).astype(np.int32)}
  mesh = parallel.make_data_mesh(devices=1)
  device = list(DeviceBatches(arrays, batch_size=8, shuffle=True, seed=3, mesh=mesh).epoch(2))
  streamed = StreamedBatches(arrays, batch_size=8, shuffle=True, seed=3, mesh=mesh)
  host = list(streamed.loader.epoch(2))  # this process's rows, before assembly
  assert len(device) == len(host) == len(streamed) == 4
  for d, h in zip(device, host):
    assert d["inputs"].sharding.is_equivalent_to(parallel.data_sharding(mesh), 2)
    global_h = parallel.shard_batch(h, mesh)
    assert parallel.shard_batch(global_h, mesh)["inputs"] is global_h["inputs"]  # pass-through
    for key in ("inputs", "label", "mask"):
      np.testing.assert_array_equal(np.asarray(d[key]), np.asarray(global_h[key]))
  assert float(np.asarray(device[-1]["mask"]).sum()) == 6  # 30 = 3 * 8 + 6


def test_initialize_distributed_without_a_cluster_is_single_process(monkeypatch):
  for var in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID", "SLURM_JOB_ID",
              "OMPI_MCA_orte_hnp_uri", "TPU_WORKER_HOSTNAMES"):
    monkeypatch.delenv(var, raising=False)
  assert parallel.initialize_distributed() is False
  assert parallel.initialize_distributed(coordinator="h:1", num_processes=1,
                                         process_id=0) is False
  with pytest.raises(MerjaxError, match="needs all of coordinator, num_processes and process_id"):
    parallel.initialize_distributed(coordinator="127.0.0.1:1234")
  monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
  monkeypatch.setenv("JAX_PROCESS_ID", "2")
  with pytest.raises(MerjaxError, match="process_id 2 is outside 0..1"):
    parallel.initialize_distributed(coordinator="127.0.0.1:1234")


def test_bfloat16_step_keeps_float32_state_and_is_close_to_float32():
  x = jax.random.normal(jax.random.key(0), (8, 32, 40))
  batch = {"inputs": x, "label": jnp.arange(8) % 4, "mask": jnp.ones(8)}
  config = TrainConfig(optimizer="sgd", learning_rate=1e-2)
  results = {}
  for dtype in ("float32", "bfloat16"):
    model = CNN(ModelConfig(dtype=dtype, conv_pools=((2, 2), (2, 2))))  # two blocks: quick
    state = create_state(model, x[:1], config, rng=jax.random.key(1))
    if dtype == "bfloat16":  # the convolutions really run in bf16
      hlo = jit_train_step.lower(state, batch, jax.random.key(2)).as_text()
      assert "bf16" in hlo and "convolution" in hlo
    state, metrics = jit_train_step(state, batch, jax.random.key(2))
    results[dtype] = jax.device_get((state, metrics))
  (s32, m32), (s16, m16) = results["float32"], results["bfloat16"]
  for tree in (s16.params, s16.batch_stats):
    assert {leaf.dtype for leaf in jax.tree.leaves(tree)} == {np.dtype("float32")}
  assert m16["loss_sum"].dtype == np.float32
  np.testing.assert_allclose(m16["loss_sum"], m32["loss_sum"], rtol=1e-2)
  np.testing.assert_allclose(m16["grad_norm"], m32["grad_norm"], rtol=5e-2)
  for a, b in zip(jax.tree.leaves((s32.params, s32.batch_stats)),
                  jax.tree.leaves((s16.params, s16.batch_stats))):
    np.testing.assert_allclose(a, b, atol=5e-3)  # one SGD step of lr 1e-2 on bf16 gradients
