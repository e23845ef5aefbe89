"""Input pipelines: grain Loader and DeviceBatches give the same seeded, masked batches."""

import os
import threading

import _fixtures as fx
import jax
import numpy as np
import pytest
from grain.sharding import ShardOptions

from merjax import parallel
from merjax.audio.io import from_pcm16
from merjax.batches.loader import Loader, Sampler, pcm_to_float
from merjax.batches.split import DeviceBatches
from merjax.data.prepare import prepare
from merjax.data.store import open_prepared
from merjax.errors import MerjaxError

ONE_DEVICE = parallel.make_data_mesh(devices=1)


def _arrays(n=23):
  rng = np.random.default_rng(0)
  return {"inputs": rng.standard_normal((n, 3, 2)).astype(np.float32),
          "label": (np.arange(n) % 4).astype(np.int32)}


def _real(batches):
  """Indices of the real (mask == 1) examples, in order."""
  return np.concatenate([np.asarray(b["index"])[np.asarray(b["mask"]) > 0] for b in batches])


@pytest.mark.parametrize("n,batch_size", [(23, 5), (20, 5), (3, 8)])
def test_every_example_exactly_once_per_epoch(n, batch_size):
  loader = Loader(_arrays(n), batch_size=batch_size, seed=4)
  for epoch in range(3):
    batches = list(loader.epoch(epoch))
    assert len(batches) == len(loader) == -(-n // batch_size)
    assert all(b["inputs"].shape == (batch_size, 3, 2) for b in batches)  # padded, one shape
    assert sorted(_real(batches).tolist()) == list(range(n))
    assert sum(float(b["mask"].sum()) for b in batches) == n


def test_eval_order_and_padding():
  loader = Loader(_arrays(23), batch_size=5, shuffle=False)
  batches = list(loader.epoch(0))
  assert _real(batches).tolist() == list(range(23))
  assert batches[-1]["mask"].tolist() == [1, 1, 1, 0, 0]
  arrays = _arrays(23)
  np.testing.assert_array_equal(batches[1]["inputs"], arrays["inputs"][5:10])
  np.testing.assert_array_equal(batches[4]["label"][:3], arrays["label"][20:])


def test_same_seed_same_batches_new_epoch_new_order():
  a = [b["index"].tolist() for b in Loader(_arrays(), batch_size=4, seed=7).epoch(2)]
  b = [b["index"].tolist() for b in Loader(_arrays(), batch_size=4, seed=7).epoch(2)]
  other_epoch = [b["index"].tolist() for b in Loader(_arrays(), batch_size=4, seed=7).epoch(3)]
  other_seed = [b["index"].tolist() for b in Loader(_arrays(), batch_size=4, seed=8).epoch(2)]
  assert a == b and a != other_epoch and a != other_seed


def test_sequential_epochs_match_fresh_loaders():
  loader = Loader(_arrays(), batch_size=4, seed=1, num_epochs=3)
  sequential = [[b["index"].tolist() for b in loader.epoch(e)] for e in range(3)]
  fresh = [[b["index"].tolist() for b in Loader(_arrays(), batch_size=4, seed=1).epoch(e)]
           for e in range(3)]
  assert sequential == fresh
  with pytest.raises(MerjaxError, match="outside"):
    next(loader.epoch(3))


def test_drop_remainder():
  loader = Loader(_arrays(23), batch_size=5, seed=0, drop_remainder=True)
  batches = list(loader.epoch(0))
  assert len(batches) == 4 and all(b["mask"].all() for b in batches)
  assert len(set(_real(batches).tolist())) == 20
  with pytest.raises(MerjaxError, match="no full batch"):
    Loader(_arrays(3), batch_size=5, drop_remainder=True)


@pytest.mark.parametrize("drop_remainder", [False, True])
def test_hosts_split_each_epoch_and_stay_in_lockstep(drop_remainder):
  n, hosts = 23, 3
  per_host = [Loader(_arrays(n), batch_size=3, seed=2, drop_remainder=drop_remainder,
                     shard_options=ShardOptions(h, hosts)) for h in range(hosts)]
  assert len({len(loader) for loader in per_host}) == 1
  for epoch in range(2):
    seen = [_real(list(loader.epoch(epoch))).tolist() for loader in per_host]
    flat = sum(seen, [])
    assert len(flat) == len(set(flat))  # disjoint
    if not drop_remainder:
      assert sorted(flat) == list(range(n))  # together they cover everything once
    else:
      assert len(flat) == hosts * len(per_host[0]) * 3  # full batches only


def test_indices_subset_and_transform():
  arrays = _arrays(10)
  loader = Loader(arrays, batch_size=4, indices=[9, 2, 5], shuffle=False,
                  transform=lambda b: {**b, "double": b["inputs"] * 2})
  (batch,) = list(loader.epoch(0))
  assert batch["index"][:3].tolist() == [9, 2, 5] and batch["mask"].tolist() == [1, 1, 1, 0]
  np.testing.assert_array_equal(batch["double"][:3], arrays["inputs"][[9, 2, 5]] * 2)


def test_device_batches_match_the_loader():
  arrays = _arrays(23)
  device = DeviceBatches(arrays, batch_size=5, seed=3, shuffle=True, mesh=ONE_DEVICE)
  loader = Loader(arrays, batch_size=5, seed=3)
  assert len(device) == len(loader)
  for epoch in (0, 1):
    for on_device, on_host in zip(device.epoch(epoch), loader.epoch(epoch)):
      assert isinstance(on_device["inputs"], jax.Array)
      for key in ("inputs", "label", "mask", "index"):
        np.testing.assert_array_equal(np.asarray(on_device[key]), on_host[key])
  evaluation = DeviceBatches(arrays, batch_size=5, shuffle=False, mesh=ONE_DEVICE)
  assert _real(evaluation.epoch(0)).tolist() == list(range(23))


def test_device_batches_budget_and_sharding():
  arrays = _arrays(23)
  need = sum(v.nbytes for v in arrays.values())
  assert DeviceBatches.fits(arrays, mesh=ONE_DEVICE, memory_budget_bytes=need)
  assert not DeviceBatches.fits(arrays, mesh=ONE_DEVICE, memory_budget_bytes=need - 1)
  with pytest.raises(MerjaxError, match="budget"):
    DeviceBatches(arrays, batch_size=4, shuffle=False, mesh=ONE_DEVICE,
                  memory_budget_bytes=need - 1)
  with pytest.raises(MerjaxError, match="same length"):
    DeviceBatches({"inputs": arrays["inputs"], "label": arrays["label"][:3]}, batch_size=4,
                  shuffle=False, mesh=ONE_DEVICE)
  mesh = parallel.make_data_mesh(devices=jax.device_count())
  batch_sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
  device = DeviceBatches(arrays, batch_size=4 * jax.device_count(), shuffle=False, mesh=mesh,
                         memory_budget_bytes=need)
  batch = next(device.epoch(0))
  assert batch["inputs"].sharding.is_equivalent_to(batch_sharding, 3)
  np.testing.assert_array_equal(np.asarray(batch["inputs"]),
                                arrays["inputs"][:4 * jax.device_count()])


def test_sampler_validation():
  with pytest.raises(MerjaxError, match="empty"):
    Sampler(0, 4)
  with pytest.raises(MerjaxError, match="batch_size"):
    Sampler(4, 0)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
  root = tmp_path_factory.mktemp("pipeline")
  top = fx.make_folder(str(root / "src"), per_quadrant=5, seconds=0.3)
  prepare("folder:pipe", manual_dir=top, data_dir=root / "data", clip_seconds=0.25, workers=1,
          progress=False)
  return open_prepared("folder:pipe", root / "data")


def test_loader_over_the_store(store):
  train = store.indices("train")
  loader = Loader(store, batch_size=4, indices=train, seed=0, transform=pcm_to_float)
  batches = list(loader.epoch(0))
  assert sorted(_real(batches).tolist()) == train.tolist()
  batch = batches[0]
  assert batch["waveform"].dtype == np.float32 and batch["waveform"].shape == (4, 4000)
  for row, index in enumerate(batch["index"]):
    np.testing.assert_array_equal(batch["waveform"][row], store.waveform(index))
    assert batch["label"][row] == store.labels[index]


@pytest.mark.slow
def test_worker_processes_give_the_same_batches(store):
  train = store.indices("train")
  in_process = Loader(store, batch_size=4, indices=train, seed=5, num_epochs=2)
  workers = Loader(store, batch_size=4, indices=train, seed=5, num_epochs=2, worker_count=2,
                   transform=pcm_to_float, read_threads=4)
  got = []
  # Fresh worker processes open the store from several threads at once (this once deadlocked
  # inside TFDS's lazy imports), so consume in a thread with a deadline instead of hanging.
  reader = threading.Thread(target=lambda: got.extend(
      b for e in (0, 1) for b in workers.epoch(e)), daemon=True)
  reader.start()
  reader.join(timeout=180)
  assert not reader.is_alive(), "grain workers did not deliver the batches within 180 s"
  workers.close()
  expected = [b for e in (0, 1) for b in in_process.epoch(e)]
  assert len(got) == len(expected) == 2 * len(in_process)
  for a, b in zip(expected, got):
    np.testing.assert_array_equal(a["index"], b["index"])
    np.testing.assert_array_equal(from_pcm16(a["waveform"]), b["waveform"])


_FOUR_DEVICES = """
import sys
sys.path[:0] = sys.argv[1:2]
import jax
jax.config.update("jax_num_cpu_devices", 4)
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from merjax import parallel
from merjax.batches.split import DeviceBatches
from merjax.batches.loader import Loader

arrays = {"inputs": np.arange(30 * 2, dtype=np.float32).reshape(30, 2), "label": np.arange(30) % 4}
mesh = parallel.make_data_mesh(devices=4)
device = DeviceBatches(arrays, batch_size=8, seed=1, shuffle=True, mesh=mesh,
                       memory_budget_bytes=10**6)
host = Loader(arrays, batch_size=8, seed=1)
for a, b in zip(device.epoch(1), host.epoch(1)):
  assert len(a["inputs"].addressable_shards) == 4
  assert a["inputs"].addressable_shards[0].data.shape == (2, 2)
  np.testing.assert_array_equal(np.asarray(a["inputs"]), b["inputs"])
  np.testing.assert_array_equal(np.asarray(a["mask"]), b["mask"])
print("ok on", jax.device_count(), "devices")
"""


@pytest.mark.slow
def test_device_batches_on_four_devices():
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(__file__))
  result = subprocess.run([sys.executable, "-c", _FOUR_DEVICES, root], capture_output=True,
                          text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "ok on 4 devices" in result.stdout
