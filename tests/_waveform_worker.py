"""Subprocess worker for tests/test_waveform_training.py: runs with 8 virtual CPU devices.

  python _waveform_worker.py --out r.npz

Writes the offline x5 set's log-mels as computed by the waveform pipeline on meshes of 1 and
8 devices (two epochs each, rows in example order), and the parameters after a 2-epoch ``fit``
of the waveform pipeline on 8 devices under ``jax.transfer_guard("disallow")``.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
  parser = argparse.ArgumentParser()
  parser.add_argument("--out", required=True)
  args = parser.parse_args()
  import jax
  import numpy as np
  import test_waveform_training as t

  from merjax import parallel

  assert jax.device_count() == 8, jax.devices()
  waveforms, labels, _ = t.make_clips()
  out = {}
  for devices in (1, 8):
    mesh = parallel.make_data_mesh(devices=devices)
    for epoch in (0, 1):
      out[f"mels/{devices}/{epoch}"] = t.waveform_set(waveforms, labels, mesh=mesh, epoch=epoch)
  result = t.fit_waveforms(waveforms, labels, mesh=parallel.make_data_mesh(devices=8),
                           guard=True)
  out.update({f"fit/{k}": v for k, v in t.flat_params(result.state).items()})
  np.savez(args.out, **out)


if __name__ == "__main__":
  main()
