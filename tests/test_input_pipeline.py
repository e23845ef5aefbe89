"""One input pipeline: resident (sharded) and streamed batches, per-process reads, equal fits.

The 8-device and 2-process cases run in fresh interpreters (``_parallel_worker.py``): the CPU
device count and the process layout are fixed when jax starts.
"""

import json

import _parallel_worker as worker
import jax
import numpy as np
import pytest

from merjax import parallel
from merjax.batches.loader import GlobalBatchSampler, Loader
from merjax.batches.split import DeviceBatches, StreamedBatches, memory_budget, split_batches
from merjax.commands._options import add_device_memory_argument
from merjax.errors import MerjaxError
from merjax.parallel import per_process


def _arrays(n=23, d=3):
  return {"inputs": np.arange(n * d, dtype=np.float32).reshape(n, d),
          "label": (np.arange(n) % 4).astype(np.int32)}


def test_eight_devices_resident_is_sharded_and_streaming_gives_the_same_run(tmp_path):
  out = tmp_path / "pipeline.npz"
  worker.run("pipeline", "--devices", "8", "--out", str(out))
  r = np.load(out)
  assert str(r["resident_type"]) == "DeviceBatches" and str(r["streamed_type"]) == "StreamedBatches"
  # 44 examples padded to 48 and split over 8 devices: each holds 6 rows, no device all 48.
  assert r["stored_shape"].tolist() == [48, 24]
  assert r["stored_shard_shapes"].tolist() == [[6, 24]] * 8
  assert int(r["stored_shard_devices"]) == 8
  assert not bool(r["stored_replicated"]) and str(r["stored_spec"]) == "P('data',)"
  assert int(r["batches_compared"]) == 9  # 3 epochs x 3 batches, compared key by key in the worker
  # Different epochs really shuffle differently (the comparison is not vacuous).
  assert not np.array_equal(r["batches/0/0/index"], r["batches/1/3/index"])
  params = [k for k in r.files if k.startswith("resident[")]
  assert len(params) == 8 and any("kernel" in k for k in params)
  for key in params:  # the same batches through the same step: bit-identical
    np.testing.assert_array_equal(r[key], r[key.replace("resident", "streamed")], err_msg=key)
    np.testing.assert_array_equal(r[key], r[key.replace("resident", "guarded")], err_msg=key)
  history = json.loads(str(r["resident/history"]))
  assert len(history) == 3 and history == json.loads(str(r["streamed/history"]))
  assert history == json.loads(str(r["guarded/history"]))  # fit under transfer_guard("disallow")


@pytest.mark.slow
def test_two_processes_read_only_their_rows_and_build_the_one_process_batches(tmp_path):
  worker.run_processes("pipeline_multihost", str(tmp_path))
  worker.run("pipeline_multihost", "--devices", "4", "--out", str(tmp_path / "ref.npz"),
             timeout=240)
  p = [np.load(tmp_path / f"p{i}.npz") for i in range(2)]
  ref = np.load(tmp_path / "ref.npz")
  assert int(p[0]["process_count"]) == 2 and int(ref["process_count"]) == 1
  assert int(p[0]["device_count"]) == int(ref["device_count"]) == 4
  batches = [k for k in ref.files if k.startswith(("streamed/", "resident/"))]
  assert len(batches) == 2 * 2 * 4 * 4  # modes x epochs x batches x keys
  for key in batches:  # global batches, gathered: equal on both processes and to one process
    for proc in p:
      np.testing.assert_array_equal(proc[key], ref[key], err_msg=key)
    if key.startswith("streamed/"):
      np.testing.assert_array_equal(ref[key], ref[key.replace("streamed/", "resident/")])
  # Streamed: process i read exactly the examples of rows 4i..4i+3 of every global batch.
  assert len(ref["streamed_reads"]) == 2 * 4 * 8
  for i, proc in enumerate(p):
    mine = np.concatenate([ref[f"streamed/{e}/{b}/index"][4 * i:4 * (i + 1)]
                           for e in (0, 1) for b in range(4)])
    assert sorted(proc["streamed_reads"].tolist()) == sorted(mine.tolist())
  assert len(p[0]["streamed_reads"]) + len(p[1]["streamed_reads"]) == len(ref["streamed_reads"])
  # Resident: 30 examples padded to 32 over 4 devices; each process read its 2 devices' rows.
  assert p[0]["resident_reads"].tolist() == list(range(16))
  assert p[1]["resident_reads"].tolist() == list(range(16, 30))
  # Features: each process computed its own songs; every process holds all rows, and the
  # preprocessing fitted on them has the same fingerprint everywhere (and as one process).
  assert p[0]["feature_rows_computed"].tolist() == list(range(15))
  assert p[1]["feature_rows_computed"].tolist() == list(range(15, 30))
  for proc in p:
    np.testing.assert_array_equal(proc["features_raw"], ref["features_raw"])
    assert str(proc["preprocessing_fingerprint"]) == str(ref["preprocessing_fingerprint"])
  assert p[0]["preprocessing_kept"].tolist() == [0, 1, 2, 3]  # the correlated column dropped
  assert "differs across processes" in str(p[0]["mismatch_error"])
  assert str(ref["mismatch_error"]) == ""


def test_split_batches_resides_when_it_fits_and_streams_otherwise():
  arrays = _arrays(23)
  need = 23 * (3 * 4 + 4)
  logs = []
  mesh = parallel.make_data_mesh(devices=1)
  resident = split_batches(arrays, batch_size=5, shuffle=True, seed=4, mesh=mesh,
                           memory_budget_bytes=need, log=logs.append)
  streamed = split_batches(arrays, batch_size=5, shuffle=True, seed=4, mesh=mesh,
                           memory_budget_bytes=need - 1, log=logs.append)
  assert isinstance(resident, DeviceBatches) and isinstance(streamed, StreamedBatches)
  assert "resident" in logs[0] and "streamed" in logs[1]
  assert len(resident) == len(streamed) == 5
  for epoch in (0, 3):
    for a, b in zip(resident.epoch(epoch), streamed.epoch(epoch), strict=True):
      assert isinstance(b["inputs"], jax.Array)
      for key in ("inputs", "label", "mask", "index"):
        np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
  # A source with a transform is budgeted after the transform (float64 doubles the size).
  def double(batch):
    return {**batch, "inputs": batch["inputs"].astype(np.float64)}

  assert isinstance(split_batches(arrays, batch_size=5, shuffle=False, mesh=mesh,
                                  transform=double, memory_budget_bytes=need), StreamedBatches)
  assert isinstance(split_batches(arrays, batch_size=5, shuffle=False, mesh=mesh,
                                  device_memory_gb=1), DeviceBatches)


def test_memory_budget_and_option():
  import argparse
  assert memory_budget(2) == 2 * 2**30 and memory_budget(0) == 0
  assert memory_budget() is None or memory_budget() > 0
  with pytest.raises(MerjaxError, match="non-negative"):
    memory_budget(-1)
  parser = argparse.ArgumentParser()
  add_device_memory_argument(parser)
  assert parser.parse_args(["--device-memory-gb", "1.5"]).device_memory_gb == 1.5
  assert parser.parse_args([]).device_memory_gb is None
  with pytest.raises(SystemExit):
    parser.parse_args(["--device-memory-gb", "-2"])


def test_global_batch_sampler_slices_the_one_process_batches():
  full = GlobalBatchSampler(23, 8, seed=1)
  halves = [GlobalBatchSampler(23, 8, rows=slice(4 * i, 4 * (i + 1)), seed=1) for i in (0, 1)]
  positions, mask = full.epoch(2)
  parts = [h.epoch(2) for h in halves]
  np.testing.assert_array_equal(np.concatenate([q[0] for q in parts], axis=1), positions)
  np.testing.assert_array_equal(np.concatenate([q[1] for q in parts], axis=1), mask)
  assert sorted(positions[mask > 0].tolist()) == list(range(23))
  loader = Loader(_arrays(23), sampler=halves[1], shuffle=False)
  (first, *_), = [list(loader.epoch(2))]
  np.testing.assert_array_equal(first["index"], positions[0, 4:])


def test_process_rows_and_prefetch_on_one_device():
  mesh = parallel.make_data_mesh(devices=1)
  assert parallel.process_rows(mesh, 8) == slice(0, 8)
  with pytest.raises(MerjaxError, match="positive|at least 1"):
    list(parallel.prefetch_to_mesh(iter([]), mesh, size=0))
  batches = [{"x": np.full((2,), i, np.float32)} for i in range(5)]
  pulled = []

  def source():
    for i, batch in enumerate(batches):
      pulled.append(i)
      yield batch

  stream = parallel.prefetch_to_mesh(source(), mesh, size=2)
  first = next(stream)
  assert pulled == [0, 1, 2]  # two batches on their way while the first is consumed
  assert float(np.asarray(first["x"])[0]) == 0
  assert [float(np.asarray(b["x"])[0]) for b in stream] == [1, 2, 3, 4]
  # Batches that are global arrays already (resident, or prefetched upstream) are not buffered.
  batches = [parallel.shard_batch(b, mesh) for b in batches]
  pulled.clear()
  stream = parallel.prefetch_to_mesh(source(), mesh, size=2)
  assert next(stream)["x"] is batches[0]["x"] and pulled == [0]


def test_fingerprint_is_bit_exact_and_one_process_shares_everything():
  a = {"mean": np.array([0.1, 0.2]), "keep": [1, 2], "name": "x", "t": 0.95}
  assert per_process.fingerprint(a) == per_process.fingerprint(dict(reversed(list(a.items()))))
  b = {**a, "mean": np.array([0.1, np.nextafter(0.2, 1)])}
  assert per_process.fingerprint(a) != per_process.fingerprint(b)
  assert per_process.fingerprint(np.float32(1)) != per_process.fingerprint(np.float64(1))
  assert per_process.assert_same_on_every_process(a, what="a") == per_process.fingerprint(a)
  assert per_process.process_share(5).tolist() == list(range(5))
  rows = per_process.map_per_process(lambda idx: np.stack([idx, idx * 2], axis=1), 5)
  assert rows.tolist() == [[i, 2 * i] for i in range(5)]
  with pytest.raises(MerjaxError, match="computed 2 rows"):
    per_process.allgather_rows(np.zeros((2, 1)), n=5)


def test_resident_gather_on_a_mesh_is_exact_for_every_dtype():
  mesh = parallel.make_data_mesh(devices=1)
  arrays = {**_arrays(11), "flag": np.arange(11) % 3 == 0,
            "half": np.linspace(-1, 1, 11).astype(jax.numpy.bfloat16)}
  resident = DeviceBatches(arrays, batch_size=4, shuffle=True, seed=2, mesh=mesh)
  host = Loader(arrays, batch_size=4, seed=2)
  for a, b in zip(resident.epoch(1), host.epoch(1), strict=True):
    for key in arrays:
      assert a[key].dtype == arrays[key].dtype, key
      np.testing.assert_array_equal(np.asarray(a[key]), b[key], err_msg=key)


def test_repeats_store_each_row_once_and_number_the_examples():
  mesh = parallel.make_data_mesh(devices=1)
  arrays = _arrays(7)
  once = 7 * (3 * 4 + 4)  # the 7 rows, stored once although an epoch covers 21 examples
  resident = split_batches(arrays, batch_size=4, shuffle=True, seed=1, mesh=mesh, repeats=3,
                           memory_budget_bytes=once)
  streamed = split_batches(arrays, batch_size=4, shuffle=True, seed=1, mesh=mesh, repeats=3,
                           memory_budget_bytes=once - 1)
  assert isinstance(resident, DeviceBatches) and isinstance(streamed, StreamedBatches)
  assert resident.arrays["inputs"].shape[0] == 7 and len(resident) == len(streamed) == 6
  seen = []
  for a, b in zip(resident.epoch(2), streamed.epoch(2), strict=True):
    for key in ("inputs", "label", "mask", "index"):
      np.testing.assert_array_equal(np.asarray(a[key]), np.asarray(b[key]), err_msg=key)
    real = np.asarray(a["mask"]) > 0
    index = np.asarray(a["index"])[real]
    np.testing.assert_array_equal(np.asarray(a["inputs"])[real], arrays["inputs"][index % 7])
    seen.extend(index.tolist())
  assert sorted(seen) == list(range(21))  # example j is row j % 7, repeat j // 7
