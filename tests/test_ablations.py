"""The ablation runner (experiments/ablations.py) and the fine-tuned fusion it uses."""

import importlib.util
import json
import math
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from scipy import stats

from merjax import parallel
from merjax.config import STAGES, Config, derive_seed, paper_config
from merjax.train.finetune import finetune_hybrid, pack_inputs
from merjax.train.stages import StageData, train_hybrid

ROOT = Path(__file__).resolve().parents[1]


def _load_ablations():
  spec = importlib.util.spec_from_file_location("ablations", ROOT / "experiments/ablations.py")
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module  # dataclasses look their module up while it executes
  spec.loader.exec_module(module)
  return module


ablations = _load_ablations()


def test_grid_cells_differ_from_the_base_only_in_their_augmentation():
  base = ablations.experiment("merge:audio_balanced")
  cells = ablations.ablation_grid(base)
  assert [c.key for c in cells] == ["none", *ablations.TRANSFORMS, "offline", "online"]
  for cell in cells:
    assert cell.config.replace(augment=base.augment) == base
  by_key = {c.key: c for c in cells}
  assert by_key["none"].config.augment.mode == "none"
  assert by_key["pitch_shift"].config.augment.transforms == ("pitch_shift",)
  assert by_key["offline"].config.augment.mode == "offline"
  assert by_key["online"].config.augment.mode == "online"
  assert set(by_key["online"].config.augment.transforms) == set(ablations.TRANSFORMS)
  assert "dnn" in by_key["none"].models and "dnn" not in by_key["offline"].models
  assert "hybrid_finetuned" in by_key["offline"].models
  seeded = ablations.with_seed(base, 7)
  assert seeded.seed == 7 and seeded.data_seed == base.data_seed  # the data stay fixed
  assert [seeded.stage(s).seed for s in STAGES] == [derive_seed(7, s) for s in STAGES]
  assert seeded.augment.seed == derive_seed(7, "augment") != base.augment.seed


def test_base_config_is_the_datasets_own_table2_preset():
  # Both splits of a subset share its preset (the 40-30-30 split once fell back to Audio
  # Balanced's).
  assert ablations.experiment("merge:audio_complete:40_30_30") == paper_config(
      preset="merge_audio_complete")
  assert ablations.experiment("merge:bimodal_balanced").cnn.optimizer == "adam"


def test_t_interval_matches_the_student_t_formula():
  values = [0.61, 0.70, 0.66, 0.64, 0.69]
  out = ablations.t_interval(values)
  mean, sem = np.mean(values), stats.sem(values)
  low, high = stats.t.interval(0.95, len(values) - 1, loc=mean, scale=sem)
  assert out["n"] == 5 and out["mean"] == pytest.approx(mean)
  assert out["std"] == pytest.approx(np.std(values, ddof=1))
  assert (out["low"], out["high"]) == pytest.approx((low, high))
  single = ablations.t_interval([0.5])
  assert single["mean"] == 0.5 and math.isnan(single["std"]) and math.isnan(single["low"])


def _tiny_stage_data(seed=0):
  rng = np.random.default_rng(seed)
  labels = {s: np.arange(n) % 4 for s, n in (("train", 16), ("validate", 8), ("test", 8))}
  mels = {s: rng.normal(size=(len(y), 128, 100)).astype(np.float32) + y[:, None, None] * 0.3
          for s, y in labels.items()}
  features = {s: (rng.normal(size=(len(y), 12)) + y[:, None]).astype(np.float32)
              for s, y in labels.items()}
  return StageData(mels=mels, features=features,
                   labels={s: y.astype(np.int32) for s, y in labels.items()})


def test_finetuning_trains_the_branches_and_keeps_the_heads():
  data = _tiny_stage_data()
  base = Config()
  config = base.replace(**{s: base.stage(s).replace(max_epochs=1) for s in ("cnn", "dnn",
                                                                             "fusion")})
  mesh = parallel.make_data_mesh(devices=1)
  model, _ = train_hybrid(data, config=config, mesh=mesh, mel_mean=0.0, mel_std=1.0, log=None)
  tuned, fit = finetune_hybrid(model, data, mesh=mesh, log=None)
  assert fit.history and fit.history[0]["epoch"] == 1
  changed = jax.tree.map(lambda a, b: bool(np.any(np.asarray(a) != np.asarray(b))),
                         (model.cnn["params"]["body"], model.dnn["params"]["body"],
                          model.fusion["params"]),
                         (tuned.cnn["params"]["body"], tuned.dnn["params"]["body"],
                          tuned.fusion["params"]))
  assert all(any(jax.tree.leaves(part)) for part in changed)  # every part was trained
  assert jax.tree.all(jax.tree.map(np.array_equal, model.cnn["params"]["head"],
                                   tuned.cnn["params"]["head"]))
  logits = tuned.logits(mels=data.mels["test"], features=data.features["test"])
  assert logits.shape == (8, 4) and np.isfinite(logits).all()
  packed = pack_inputs(data.mels["test"], data.features["test"])
  assert packed.shape == (8, 128 * 100 + 12)
  np.testing.assert_array_equal(packed[:, -12:], data.features["test"])


@pytest.mark.slow
def test_quick_runner_writes_its_table_plot_and_resumes(tmp_path):
  out = tmp_path / "ablations"
  argv = ["--quick", "--out", str(out), "--seeds", "2", "--cells", "none", "power_shift",
          "--max-epochs", "1", "--clips-per-quadrant", "5", "--workers", "1", "--quiet"]
  assert ablations.main(argv) == 0
  table = (out / "ablations.md").read_text()
  for label in ("FE only (DNN)", "FL only (CNN)", "Hybrid, frozen fusion",
                "Hybrid, fine-tuned fusion", "power_shift alone (offline)", "95 % CI"):
    assert label in table
  rows = json.loads((out / "ablations.json").read_text())["rows"]
  assert len(rows) == 4 + 2 and all(r["n"] == 2 for r in rows)
  assert all(0.0 <= r["mean"] <= 1.0 for r in rows)
  assert (out / "ablations.png").stat().st_size > 0
  runs = (out / "runs.jsonl").read_text().splitlines()
  assert len(runs) == 2 * 4 + 2 * 2
  # A second call finds every repetition done and only rewrites the report.
  assert ablations.main(argv) == 0
  assert (out / "runs.jsonl").read_text().splitlines() == runs
