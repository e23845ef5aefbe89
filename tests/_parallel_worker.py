"""Subprocess worker for tests/test_parallel.py, test_multihost.py and test_resume.py.

These tests need a device count or a process layout fixed before jax starts (or a process
that dies), so they run this script in fresh interpreters and compare what it writes.

  python _parallel_worker.py devices --devices 8 --out r.npz
  python _parallel_worker.py multihost --devices 2 --coordinator H:P --num-processes 2 \\
      --process-id 0 --out r0.npz     (or without --coordinator: one process)
  python _parallel_worker.py resume --workdir W --out r.npz [--kill-after-epoch K]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


# --- used by the tests (parent side) ---------------------------------------------------------

def free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def start(mode: str, *args: str) -> subprocess.Popen:
  """Starts the worker in a fresh interpreter (output captured)."""
  env = dict(os.environ, PYTHONPATH=REPO, JAX_PLATFORMS="cpu")
  env.pop("XLA_FLAGS", None)
  return subprocess.Popen([sys.executable, os.path.abspath(__file__), mode, *args], env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen, *, timeout: float) -> tuple[int, str]:
  """Waits for a worker (killing it past ``timeout``); returns its exit code and output."""
  try:
    output, _ = proc.communicate(timeout=timeout)
  except subprocess.TimeoutExpired as timeout_error:
    proc.kill()
    output, _ = proc.communicate()
    raise AssertionError(f"worker timed out after {timeout}s:\n{output[-3000:]}") from timeout_error
  return proc.returncode, output


def run(mode: str, *args: str, timeout: float = 300) -> str:
  """Runs the worker to completion and fails with its output if it fails."""
  code, output = finish(start(mode, *args), timeout=timeout)
  assert code == 0, f"worker {mode} exited with {code}:\n{output[-3000:]}"
  return output


def run_processes(mode: str, out_dir, *, processes: int = 2, devices: int = 2,
                  timeout: float = 240) -> list[str]:
  """Runs ``mode`` in ``processes`` processes joined on 127.0.0.1; returns their .npz paths."""
  coordinator = f"127.0.0.1:{free_port()}"
  outs = [os.path.join(out_dir, f"p{i}.npz") for i in range(processes)]
  finish_all([start(mode, "--devices", str(devices), "--coordinator", coordinator,
                    "--num-processes", str(processes), "--process-id", str(i), "--out", outs[i])
              for i in range(processes)], timeout=timeout)
  return outs


def finish_all(procs: list[subprocess.Popen], *, timeout: float) -> list[str]:
  """Waits for the processes of one multi-process run; fails naming the first that failed.

  Returns:
    Each process's output.
  """
  outputs = []
  try:
    for i, proc in enumerate(procs):
      code, output = finish(proc, timeout=timeout)
      assert code == 0, f"process {i} exited with {code}:\n{output[-3000:]}"
      outputs.append(output)
  finally:
    for proc in procs:  # a failed peer leaves the others waiting on the coordinator
      if proc.poll() is None:
        proc.kill()
        proc.wait()
  return outputs


# --- worker side ---------------------------------------------------------------------------


def _flat(tree, prefix: str) -> dict:
  import jax
  import numpy as np
  return {prefix + jax.tree_util.keystr(path): np.asarray(leaf)
          for path, leaf in jax.tree_util.tree_leaves_with_path(jax.device_get(tree))}


def _blobs(n: int, d: int, seed: int):
  import numpy as np
  rng = np.random.default_rng(seed)
  labels = (np.arange(n) % 4).astype(np.int32)
  centers = rng.normal(size=(4, d)) * 2.0
  return (centers[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


def _mels(n: int, *, n_mels: int, frames: int, seed: int):
  import numpy as np
  rng = np.random.default_rng(seed)
  labels = (np.arange(n) % 4).astype(np.int32)
  return rng.normal(size=(n, n_mels, frames)).astype(np.float32), labels


def devices(args) -> dict:
  """Three CNN and DNN steps on one device and on a mesh of all devices; fit on both."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from merjax import parallel
  from merjax.config import ModelConfig, TrainConfig
  from merjax.errors import MerjaxError
  from merjax.models import CNN, DNN
  from merjax.train import create_state, train_classifier
  from merjax.train.fit import evaluate_batches
  from merjax.train.steps import jit_train_step, mesh_train_step

  assert jax.device_count() == args.devices, jax.devices()
  mesh = parallel.make_data_mesh()
  out = {}
  mels, mel_labels = _mels(16, n_mels=128, frames=100, seed=0)
  feats, feat_labels = _blobs(16, 24, seed=1)
  for name, model, x, y, opt in (("cnn", CNN(ModelConfig()), mels, mel_labels, "sgd"),
                                 ("dnn", DNN(ModelConfig()), feats, feat_labels, "adam")):
    config = TrainConfig(optimizer=opt, learning_rate=1e-2, batch_size=16)
    # The last example is padding: the masked BatchNorm must ignore it on every device.
    batch = {"inputs": x, "label": y, "mask": jnp.ones(16).at[-1].set(0.0)}
    init = jax.device_get(create_state(model, jnp.asarray(x[:1]), config, rng=jax.random.key(0)))
    rng = jax.random.key(1)
    single = jax.device_put(init, jax.devices()[0])
    for _ in range(3):
      single, _ = jit_train_step(single, batch, rng)
    sharded = parallel.replicate(init, mesh)
    batch_sharded = parallel.shard_batch(batch, mesh)
    step = mesh_train_step(mesh)
    for _ in range(3):
      sharded, metrics = step(sharded, batch_sharded, parallel.replicate(rng, mesh))
    out.update(_flat(single.variables, f"single/{name}"))
    out.update(_flat(sharded.variables, f"mesh/{name}"))
    out[f"mesh/{name}/batch_sharding"] = str(batch_sharded["inputs"].sharding.spec)
    out[f"mesh/{name}/param_replicated"] = all(
        leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(sharded.params))

  # The whole fit path (DeviceBatches on the mesh, padded evaluation) against one device.
  x, y = _blobs(44, 24, seed=2)  # 36 train, 8 validate: last batches are padded
  config = TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=16, max_epochs=3,
                       train_accuracy_stop=None)
  split = dict(train={"inputs": x[:36], "label": y[:36]}, val={"inputs": x[36:], "label": y[36:]})
  for key, used in (("single", parallel.make_data_mesh(devices=1)), ("mesh", mesh)):
    result = train_classifier(DNN(ModelConfig()), config=config, stage="dnn", log=None,
                              mesh=used, **split)
    out.update(_flat(result.state.params, f"{key}/fit"))
    out[f"{key}/fit/history"] = json.dumps([{k: v for k, v in r.items() if k != "seconds"}
                                            for r in result.history])
    state = parallel.replicate(result.state, used)
    metrics = evaluate_batches(state, parallel_batches(split["val"], mesh=used), mesh=used)
    out[f"{key}/fit/val_metrics"] = np.asarray([metrics["loss"], metrics["accuracy"]])
  try:
    train_classifier(DNN(ModelConfig()), config=config.replace(batch_size=12), stage="dnn",
                     log=None, mesh=mesh, **split)
    out["error"] = ""
  except MerjaxError as e:
    out["error"] = str(e)
  return out


def parallel_batches(split, *, mesh):
  from merjax import parallel
  from merjax.batches.split import DeviceBatches
  size = parallel.round_up(16, parallel.data_size(mesh))
  return DeviceBatches(split, batch_size=size, shuffle=False, mesh=mesh).epoch()


def _join(args) -> None:
  """Joins the multi-process run given by --coordinator (nothing for one process)."""
  from merjax import parallel
  if args.coordinator:
    assert parallel.initialize_distributed(coordinator=args.coordinator,
                                           num_processes=args.num_processes,
                                           process_id=args.process_id, timeout_s=60)


def multihost(args) -> dict:
  """DNN training on a global mesh: device-resident and host-fed batches."""
  from merjax import parallel
  _join(args)
  import jax

  from merjax.batches.split import StreamedBatches
  from merjax.config import ModelConfig, TrainConfig
  from merjax.models import DNN
  from merjax.train import create_state, fit, train_classifier

  mesh = parallel.make_data_mesh()
  x, y = _blobs(72, 24, seed=3)  # 56 train (last batch padded), 16 validate
  config = TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=16, max_epochs=3,
                       train_accuracy_stop=None)
  train, val = {"inputs": x[:56], "label": y[:56]}, {"inputs": x[56:], "label": y[56:]}
  out = {"process_count": jax.process_count(), "device_count": jax.device_count()}
  device_fed = train_classifier(DNN(ModelConfig()), train=train, val=val, config=config,
                                stage="dnn", log=None, mesh=mesh)
  out.update(_flat(device_fed.state.params, "device_fed"))
  out["device_fed/history"] = json.dumps([{k: v for k, v in r.items() if k != "seconds"}
                                          for r in device_fed.history])
  # Host-fed (streamed): each process reads its rows of every global batch with grain, and
  # they are assembled with make_array_from_process_local_data.
  rng = jax.random.key(config.seed)
  init_rng, dropout_rng = jax.random.split(rng)
  state = create_state(DNN(ModelConfig()), x[:1], config, rng=init_rng)
  train_data = StreamedBatches(train, batch_size=16, shuffle=True, seed=config.seed, mesh=mesh)
  val_data = StreamedBatches(val, batch_size=16, shuffle=False, mesh=mesh)
  host_fed = fit(state, train_batches=train_data.epoch, val_batches=val_data.epoch,
                 config=config, rng=dropout_rng, mesh=mesh, stage="dnn", log=None)
  out.update(_flat(host_fed.state.params, "host_fed"))
  out["local_batch_rows"] = next(iter(train_data.loader.epoch(0)))["inputs"].shape[0]
  return out


def resume(args) -> dict:
  """A CNN (BatchNorm, dropout, Adam) trained with a work dir; optionally SIGKILLs itself."""
  import jax

  from merjax import parallel
  from merjax.config import ModelConfig, TrainConfig
  from merjax.models import CNN
  from merjax.train import train_classifier

  x, y = _mels(40, n_mels=32, frames=40, seed=4)
  config = TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=8,
                       max_epochs=args.epochs, patience=100, train_accuracy_stop=None, seed=5)
  lines, last = [], {}

  def on_epoch_end(epoch, record, state, stopper):
    last["state"] = jax.device_get(state.variables)
    if args.kill_after_epoch is not None and epoch + 1 == args.kill_after_epoch:
      os.kill(os.getpid(), signal.SIGKILL)

  model = CNN(ModelConfig(conv_pools=((2, 2), (2, 2))))  # two conv blocks keep it quick
  result = train_classifier(model, train={"inputs": x[:32], "label": y[:32]},
                            val={"inputs": x[32:], "label": y[32:]}, config=config, stage="cnn",
                            log=lines.append, workdir=args.workdir, hooks=[on_epoch_end],
                            mesh=parallel.make_data_mesh(devices=1))
  out = _flat(result.state.variables, "best")
  if "state" in last:  # absent when the work dir already held the finished run
    out.update(_flat(last["state"], "last"))
  out["history"] = json.dumps([{k: v for k, v in r.items() if k != "seconds"}
                               for r in result.history])
  out["best_epoch"] = result.best_epoch
  out["log"] = "\n".join(lines)
  return out


def _history(result) -> str:
  return json.dumps([{k: v for k, v in r.items() if k != "seconds"} for r in result.history])


def pipeline(args) -> dict:
  """Resident (sharded) and streamed batches of one split on a mesh, and fit with each."""
  import jax
  import numpy as np

  from merjax import parallel
  from merjax.batches.split import DeviceBatches, StreamedBatches, split_batches
  from merjax.config import ModelConfig, TrainConfig
  from merjax.models import DNN
  from merjax.train import create_state, fit, train_classifier

  mesh = parallel.make_data_mesh()
  x, y = _blobs(60, 24, seed=6)  # 44 train (padded to 48 rows: 6 per device), 16 validate
  train, val = {"inputs": x[:44], "label": y[:44]}, {"inputs": x[44:], "label": y[44:]}
  per_device = 6 * (24 * 4 + 4)  # bytes of the resident share of one device
  resident = split_batches(train, batch_size=16, shuffle=True, seed=0, mesh=mesh,
                           memory_budget_bytes=per_device)
  streamed = split_batches(train, batch_size=16, shuffle=True, seed=0, mesh=mesh,
                           memory_budget_bytes=per_device - 1)
  out = {"resident_type": type(resident).__name__, "streamed_type": type(streamed).__name__}
  assert isinstance(resident, DeviceBatches) and isinstance(streamed, StreamedBatches)
  stored = resident.arrays["inputs"]
  out["stored_shape"] = np.asarray(stored.shape)
  out["stored_shard_shapes"] = np.asarray([s.data.shape for s in stored.addressable_shards])
  out["stored_shard_devices"] = len({s.device for s in stored.addressable_shards})
  out["stored_replicated"] = stored.sharding.is_fully_replicated
  out["stored_spec"] = str(stored.sharding.spec)
  batch_sharding = parallel.data_sharding(mesh)
  n_batches = 0
  for epoch in (0, 1, 5):
    for a, b in zip(resident.epoch(epoch), streamed.epoch(epoch), strict=True):
      assert sorted(a) == sorted(b) == ["index", "inputs", "label", "mask"], (sorted(a), sorted(b))
      for key in a:
        assert a[key].sharding.is_equivalent_to(batch_sharding, a[key].ndim), key
        assert b[key].sharding.is_equivalent_to(batch_sharding, b[key].ndim), key
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
      out[f"batches/{epoch}/{n_batches}/index"] = np.asarray(a["index"])
      n_batches += 1
  out["batches_compared"] = n_batches
  config = TrainConfig(optimizer="adam", learning_rate=1e-3, batch_size=16, max_epochs=3,
                       train_accuracy_stop=None)
  for name, gb in (("resident", 1.0), ("streamed", 0.0)):
    result = train_classifier(DNN(ModelConfig()), train=train, val=val, config=config,
                              stage="dnn", log=None, mesh=mesh, device_memory_gb=gb)
    out.update(_flat(result.state.params, name))
    out[f"{name}/history"] = _history(result)
  # The resident path under a transfer guard: no implicit host<->device copy in the loop.
  rng = jax.random.key(config.seed)
  init_rng, dropout_rng = jax.random.split(rng)
  state = create_state(DNN(ModelConfig()), x[:1], config, rng=init_rng)
  val_batches = split_batches(val, batch_size=16, shuffle=False, mesh=mesh)
  assert isinstance(val_batches, DeviceBatches)
  with jax.transfer_guard("disallow"):
    guarded = fit(state, train_batches=resident.epoch, val_batches=val_batches.epoch,
                  config=config, rng=dropout_rng, mesh=mesh, stage="dnn", log=None)
  out.update(_flat(guarded.state.params, "guarded"))
  out["guarded/history"] = _history(guarded)
  return out


class CountingSource:
  """A random-access source that records every example index it is asked for."""

  def __init__(self, arrays):
    self.arrays, self.reads = arrays, []

  def __len__(self):
    return len(next(iter(self.arrays.values())))

  def __getitem__(self, index):
    self.reads.append(int(index))
    return {key: value[int(index)] for key, value in self.arrays.items()}


def pipeline_multihost(args) -> dict:
  """Each process reads only its rows; the global batches equal a one-process run's."""
  from merjax import parallel
  _join(args)
  import jax
  import numpy as np
  from jax.experimental import multihost_utils

  from merjax.batches.split import DeviceBatches, StreamedBatches
  from merjax.parallel import per_process

  mesh = parallel.make_data_mesh()
  x, y = _blobs(30, 6, seed=7)  # 30 examples, global batches of 8: the last one padded
  out = {"process_count": jax.process_count(), "device_count": jax.device_count()}
  source = CountingSource({"inputs": x, "label": y})
  streamed = StreamedBatches(source, batch_size=8, shuffle=True, seed=2, mesh=mesh,
                             num_epochs=2)
  for epoch in (0, 1):
    for i, batch in enumerate(streamed.epoch(epoch)):
      for key, value in batch.items():
        out[f"streamed/{epoch}/{i}/{key}"] = np.asarray(
            multihost_utils.process_allgather(value, tiled=True))
  streamed.close()
  out["streamed_reads"] = np.asarray(source.reads)
  source.reads = []
  resident = DeviceBatches(source, batch_size=8, shuffle=True, seed=2, mesh=mesh,
                           memory_budget_bytes=10**6, example_nbytes=28)
  out["resident_reads"] = np.asarray(source.reads)
  for epoch in (0, 1):
    for i, batch in enumerate(resident.epoch(epoch)):
      for key, value in batch.items():
        out[f"resident/{epoch}/{i}/{key}"] = np.asarray(
            multihost_utils.process_allgather(value, tiled=True))
  # Features: each process computes only its songs; the preprocessing is fitted on all rows.
  computed = []

  def features(indices):
    computed.extend(indices.tolist())
    rng = np.random.default_rng(11)
    table = rng.normal(size=(30, 5)) * [1, 10, 100, 1, 1]
    table[:, 4] = table[:, 3] * 2  # perfectly correlated: dropped by the preprocessing
    return table[indices]

  raw = per_process.map_per_process(features, 30)
  preprocessor = per_process.fit_feature_preprocessor(raw[:20], [f"f{j}" for j in range(5)])
  out["feature_rows_computed"] = np.asarray(computed)
  out["features_raw"] = raw
  out["preprocessing_fingerprint"] = per_process.fingerprint(preprocessor.to_dict())
  out["preprocessing_kept"] = np.asarray(preprocessor.to_dict()["keep"])
  try:
    per_process.assert_same_on_every_process({"process": jax.process_index()}, what="the index")
    out["mismatch_error"] = ""
  except Exception as error:  # pylint: disable=broad-except
    out["mismatch_error"] = str(error)
  return out


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("mode", choices=("devices", "multihost", "resume", "pipeline",
                                       "pipeline_multihost"))
  parser.add_argument("--out", required=True)
  parser.add_argument("--devices", type=int, default=1)
  parser.add_argument("--coordinator")
  parser.add_argument("--num-processes", type=int)
  parser.add_argument("--process-id", type=int)
  parser.add_argument("--workdir")
  parser.add_argument("--epochs", type=int, default=4)
  parser.add_argument("--kill-after-epoch", type=int)
  args = parser.parse_args()
  import jax
  jax.config.update("jax_platforms", "cpu")
  jax.config.update("jax_num_cpu_devices", args.devices)
  out = {"devices": devices, "multihost": multihost, "resume": resume, "pipeline": pipeline,
         "pipeline_multihost": pipeline_multihost}[args.mode](args)
  import numpy as np
  np.savez(args.out, **{k: np.asarray(v) for k, v in out.items()})


if __name__ == "__main__":
  main()
