"""Pods that start: JAX's own cluster detection, with each launcher's environment mocked.

Nothing here contacts a server: the Cloud TPU metadata server is replaced by a function, and
``jax.distributed.initialize`` by a recorder (the real join is covered by test_multihost).
"""

import jax
import numpy as np
import pytest
from jax._src.clusters import ClusterEnv, cloud_tpu_cluster

from merjax import parallel
from merjax.errors import MerjaxError
from merjax.parallel import cluster

_CLUSTER_VARIABLES = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
                      "SLURM_LOCALID", "OMPI_MCA_orte_hnp_uri", "TPU_WORKER_HOSTNAMES",
                      "TPU_PROCESS_ADDRESSES", "TPU_WORKER_ID", "TPU_SKIP_MDS_QUERY",
                      "KUBERNETES_SERVICE_HOST", "MEGASCALE_COORDINATOR_ADDRESS",
                      "MEGASCALE_NUM_SLICES", "MEGASCALE_SLICE_ID", parallel.ENV_COORDINATOR,
                      parallel.ENV_NUM_PROCESSES, parallel.ENV_PROCESS_ID)


@pytest.fixture
def calls(monkeypatch):
  """No launcher in the environment; records the calls of jax.distributed.initialize."""
  for name in _CLUSTER_VARIABLES:
    monkeypatch.delenv(name, raising=False)
  monkeypatch.setattr(cluster, "_initialized", False)
  recorded = []
  monkeypatch.setattr(jax.distributed, "initialize", lambda **kwargs: recorded.append(kwargs))
  return recorded


def _tpu_vm(monkeypatch, *, workers: list[str], worker: int):
  """A Cloud TPU VM whose metadata server lists ``workers`` and says we are ``worker``."""
  metadata = {"agent-worker-number": str(worker), "worker-network-endpoints": ",".join(workers),
              "tpu-env": ""}
  queried = []

  def get_metadata(key):
    queried.append(key)
    return metadata[key], 200

  monkeypatch.setattr(cloud_tpu_cluster, "running_in_cloud_tpu_vm", True)
  monkeypatch.setattr(cloud_tpu_cluster, "get_metadata", get_metadata)
  return queried


def test_no_cluster_means_one_process_and_no_service(calls):
  assert parallel.detect_cluster() is None
  assert parallel.initialize_distributed() is False
  assert calls == []


def test_tpu_vm_pod_slice_is_detected_through_the_metadata_server(calls, monkeypatch):
  # A v4-32-like slice: 4 hosts, no TPU_WORKER_HOSTNAMES (the old check looked only there).
  queried = _tpu_vm(monkeypatch, workers=["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"],
                    worker=2)
  assert parallel.detect_cluster() == ("gcetpu", 4)
  assert "worker-network-endpoints" in queried
  assert parallel.initialize_distributed() is True
  assert calls == [{"initialization_timeout": 300, "cluster_detection_method": "gcetpu"}]
  # jax.distributed.initialize() resolves the same layout from the same detection.
  coordinator, count, index, _ = ClusterEnv.auto_detect_unset_distributed_params(
      None, None, None, None, "gcetpu", 5)
  assert (coordinator, count, index) == ("127.0.0.1:8482", 4, 2)


def test_single_host_tpu_vm_starts_no_service(calls, monkeypatch):
  _tpu_vm(monkeypatch, workers=["127.0.0.1"], worker=0)
  assert parallel.detect_cluster() == ("gcetpu", 1)
  assert parallel.initialize_distributed() is False
  assert calls == []


def test_unreachable_metadata_server_counts_as_no_cluster(calls, monkeypatch):
  def unreachable(key):
    raise RuntimeError(f"Getting metadata['{key}'] failed for 6 tries")

  monkeypatch.setattr(cloud_tpu_cluster, "running_in_cloud_tpu_vm", True)
  monkeypatch.setattr(cloud_tpu_cluster, "get_metadata", unreachable)
  assert parallel.detect_cluster() is None
  assert parallel.initialize_distributed() is False


def test_gke_tpu_reads_the_worker_hostnames(calls, monkeypatch):
  monkeypatch.setattr(cloud_tpu_cluster, "running_in_cloud_tpu_vm", True)
  monkeypatch.setattr(cloud_tpu_cluster, "get_metadata", lambda key: ("", 404))
  monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "127.0.0.1,127.0.0.2")
  monkeypatch.setenv("TPU_WORKER_ID", "1")
  assert parallel.detect_cluster() == ("gketpu", 2)
  assert parallel.initialize_distributed() is True
  assert calls[0]["cluster_detection_method"] == "gketpu"


@pytest.mark.parametrize("tasks, joins", [("4", True), ("1", False)])
def test_slurm(calls, monkeypatch, tasks, joins):
  for name, value in {"SLURM_JOB_ID": "123", "SLURM_STEP_NODELIST": "node[1-4]",
                      "SLURM_NTASKS": tasks, "SLURM_PROCID": "0", "SLURM_LOCALID": "0"}.items():
    monkeypatch.setenv(name, value)
  assert parallel.detect_cluster() == ("slurm", int(tasks))
  assert parallel.initialize_distributed() is joins
  assert len(calls) == int(joins)


def test_open_mpi(calls, monkeypatch):
  monkeypatch.setenv("OMPI_MCA_orte_hnp_uri", "1531576320.0;tcp://127.0.0.1:34911")
  monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "2")
  monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")
  monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_RANK", "0")
  assert parallel.detect_cluster() == ("ompi", 2)
  assert parallel.initialize_distributed() is True


def test_explicit_flags_win_over_detection(calls, monkeypatch):
  _tpu_vm(monkeypatch, workers=["127.0.0.1", "127.0.0.2"], worker=0)
  assert parallel.initialize_distributed(coordinator="127.0.0.1:1234", num_processes=2,
                                         process_id=1) is True
  assert calls == [{"initialization_timeout": 300, "coordinator_address": "127.0.0.1:1234",
                    "num_processes": 2, "process_id": 1}]


def test_auto_false_never_detects(calls, monkeypatch):
  _tpu_vm(monkeypatch, workers=["127.0.0.1", "127.0.0.2"], worker=0)
  assert parallel.initialize_distributed(auto=False) is False
  assert calls == []


def test_replicated_values_are_checked_equal_across_processes(monkeypatch):
  from jax.experimental import multihost_utils

  from merjax.parallel import per_process

  tree = {"w": np.arange(6.0).reshape(2, 3), "mean": 1.5}
  digest = np.frombuffer(bytes.fromhex(per_process.fingerprint(tree)), np.uint8)
  other = np.frombuffer(bytes.fromhex(per_process.fingerprint({**tree, "mean": 2.0})), np.uint8)
  per_process.assert_same_on_every_process(tree, what="x")  # one process: nothing to compare
  monkeypatch.setattr(jax, "process_count", lambda: 3)
  monkeypatch.setattr(multihost_utils, "process_allgather",
                      lambda x: np.stack([digest, digest, digest]))
  per_process.assert_same_on_every_process(tree, what="the log-mel statistics")
  monkeypatch.setattr(multihost_utils, "process_allgather",
                      lambda x: np.stack([digest, other, digest]))
  with pytest.raises(MerjaxError, match=r"the log-mel statistics differs across processes "
                                        r"\(processes \[1\] differ from process 0\)"):
    per_process.assert_same_on_every_process(tree, what="the log-mel statistics")
