"""Two real processes on localhost (2 CPU devices each) against one process with 4 devices."""

import json

import _parallel_worker as worker
import numpy as np
import pytest


@pytest.mark.slow
def test_two_processes_match_one_process_with_four_devices(tmp_path):
  worker.run_processes("multihost", str(tmp_path))
  worker.run("multihost", "--devices", "4", "--out", str(tmp_path / "ref.npz"), timeout=240)
  p0, p1, ref = (np.load(tmp_path / f"{name}.npz") for name in ("p0", "p1", "ref"))
  assert int(p0["process_count"]) == 2 and int(p0["device_count"]) == 4
  assert int(ref["process_count"]) == 1 and int(ref["device_count"]) == 4
  # Each process fed 8 rows of every 16-example global batch.
  assert int(p0["local_batch_rows"]) == 8 and int(ref["local_batch_rows"]) == 16
  params = [k for k in ref.files if k.startswith(("device_fed[", "host_fed["))]
  assert len(params) == 16
  for key in params:
    np.testing.assert_array_equal(p0[key], p1[key], err_msg=key)  # replicated across hosts
    np.testing.assert_allclose(p0[key], ref[key], rtol=1e-5, atol=1e-6, err_msg=key)
    # Device-resident and host-fed batches give the same run.
    other = key.replace("device_fed", "host_fed") if "device_fed" in key else None
    if other:
      np.testing.assert_allclose(p0[key], p0[other], rtol=1e-6, atol=1e-7, err_msg=key)
  history, ref_history = (json.loads(str(r["device_fed/history"])) for r in (p0, ref))
  assert len(history) == len(ref_history) == 3
  for a, b in zip(history, ref_history):
    np.testing.assert_allclose([a[k] for k in b], [b[k] for k in b], rtol=1e-5)
