"""Ablations of the hybrid method: which branch, which augmentation, frozen or fine-tuned fusion.

Each cell of the grid is a :class:`merjax.config.Config` variant trained with the paper's three
stages (:func:`merjax.train.stages.train_hybrid`) and scored on the test split:

- models: FE only (the DNN on handcrafted features), FL only (the CNN on log-mels) and the
  hybrid; the DNN does not see the augmentation, so it is reported once (no augmentation);
- augmentation of the CNN's training clips: none, each transform alone, all four offline
  (the paper: the training set x5) and all four online (fresh variants every epoch);
- fusion: frozen branches (the paper) or fine-tuned end to end
  (:func:`merjax.train.finetune.finetune_hybrid`), for no augmentation and for the paper's.

Every cell is repeated over seeds (model initialisation, dropout, batch order and the
augmentation draws; the data and its split stay fixed), and the runner reports the mean,
standard deviation and 95 % confidence interval (Student's t) of the weighted F1 in
``ablations.md`` and ``ablations.png``; ``runs.jsonl`` keeps every run, so an interrupted
run resumes where it stopped.

Usage::

    python experiments/ablations.py --dataset merge:audio_balanced --data-dir DIR --out runs/abl
    python experiments/ablations.py --quick --out runs/ablations-quick   # synthetic, minutes

Configurations are code: :func:`experiment` gives the base protocol, :func:`ablation_grid`
the cells, :func:`quick` the smoke-run overrides.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from merjax.config import STAGES, Config, paper_config

TRANSFORMS = ("time_shift", "pitch_shift", "time_stretch", "power_shift")
MODELS = {"dnn": "FE only (DNN)", "cnn": "FL only (CNN)", "hybrid": "Hybrid, frozen fusion",
          "hybrid_finetuned": "Hybrid, fine-tuned fusion"}


@dataclasses.dataclass(frozen=True)
class Cell:
  """One augmentation setting and the models scored under it.

  Attributes:
    key: short name used on the command line and in ``runs.jsonl``.
    augmentation: how the cell is shown in the table.
    config: the cell's configuration (seeds are set per repetition).
    models: keys of :data:`MODELS` reported for this cell.
  """

  key: str
  augmentation: str
  config: Config
  models: tuple[str, ...]


def experiment(dataset: str = "merge:audio_balanced") -> Config:
  """The base protocol: the paper's Table 2 settings for the dataset (its preset_for)."""
  return paper_config(dataset)


def ablation_grid(base: Config) -> list[Cell]:
  """The cells, each a variant of ``base`` that differs only in its augmentation."""
  def augmented(mode: str, transforms: tuple[str, ...]) -> Config:
    return base.replace(augment=base.augment.replace(mode=mode, transforms=transforms))

  cells = [Cell("none", "none", augmented("none", ()),
                ("dnn", "cnn", "hybrid", "hybrid_finetuned"))]
  cells += [Cell(name, f"{name} alone (offline)", augmented("offline", (name,)),
                 ("cnn", "hybrid")) for name in TRANSFORMS]
  cells += [Cell("offline", "all four, offline (paper)", augmented("offline", TRANSFORMS),
                 ("cnn", "hybrid", "hybrid_finetuned")),
            Cell("online", "all four, online", augmented("online", TRANSFORMS),
                 ("cnn", "hybrid"))]
  return cells


def quick(base: Config, *, max_epochs: int = 12) -> Config:
  """``--quick``: 3-second clips, at most ``max_epochs`` epochs per stage, batches of 16.

  The DNN and fusion stages use Adam at 1e-3: Table 2's settings (e.g. Adam at 1e-4 over
  batches of 128) barely move in a few epochs on some 60 training clips.
  """
  stages = {stage: base.stage(stage).replace(max_epochs=max_epochs, patience=4, batch_size=16)
            for stage in STAGES}
  for stage in ("dnn", "fusion"):
    stages[stage] = stages[stage].replace(optimizer="adam", learning_rate=1e-3)
  return base.replace(audio=base.audio.replace(clip_seconds=3.0), **stages)


def with_seed(config: Config, seed: int) -> Config:
  """The config of one repetition: every stage and the augmentation draw from ``seed``
  (:func:`merjax.config.derive_seed`); the data seed stays, so all repetitions share the data."""
  return config.replace(seed=seed)


def t_interval(values: Sequence[float], *, confidence: float = 0.95) -> dict[str, float]:
  """Mean, sample standard deviation and the Student-t confidence interval of the mean.

  Returns:
    ``{"n", "mean", "std", "low", "high"}``; std and the interval are NaN for one value.
  """
  from scipy import stats
  values = np.asarray(values, np.float64)
  n, mean = len(values), float(values.mean())
  if n < 2:
    return {"n": n, "mean": mean, "std": math.nan, "low": math.nan, "high": math.nan}
  std = float(values.std(ddof=1))
  half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
  return {"n": n, "mean": mean, "std": std, "low": mean - half, "high": mean + half}


def _load_runs(path: Path) -> list[dict]:
  if not path.exists():
    return []
  return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_cell(cell: Cell, seed: int, *, prepare: Callable[[Config], Any],
             log: Callable[[str], Any]) -> list[dict]:
  """Trains one repetition of a cell and scores its models on the test split.

  Args:
    cell: the grid cell.
    seed: the repetition's seed (see :func:`with_seed`).
    prepare: ``config -> PreparedInputs`` (:func:`merjax.inputs.prepare.prepare_inputs`).
    log: progress sink.

  Returns:
    One record per model: cell, seed, model, test F1 / accuracy / precision / recall and the
    repetition's training time.
  """
  from merjax import parallel
  from merjax.runs.scores import score_split
  from merjax.train.finetune import finetune_hybrid
  from merjax.train.stages import train_hybrid

  start = time.perf_counter()
  config = with_seed(cell.config, seed)
  inputs = prepare(config)
  data = inputs.stage_data
  mesh = parallel.resolve_mesh()
  model, _ = train_hybrid(data, config=config, mesh=mesh, mel_mean=inputs.mel_mean,
                          mel_std=inputs.mel_std, feature_preprocessor=inputs.preprocessor,
                          log=log)
  test = dict(mels=data.mels["test"], features=data.features["test"],
              labels=data.labels["test"])
  scores = score_split(model, **test, models=[k for k in cell.models if k != "hybrid_finetuned"])
  if "hybrid_finetuned" in cell.models:
    tuned, _ = finetune_hybrid(model, data, mesh=mesh, log=log)
    scores["hybrid_finetuned"] = score_split(tuned, **test, models=("hybrid",))["hybrid"]
  scores = {kind: scores[kind] for kind in cell.models}
  seconds = time.perf_counter() - start
  return [{"cell": cell.key, "seed": seed, "model": kind, "seconds": seconds,
           **{k: m[k] for k in ("f1", "accuracy", "precision", "recall")}}
          for kind, m in scores.items()]


def summarise(cells: Sequence[Cell], runs: Sequence[dict]) -> list[dict]:
  """One row per (cell, model): the weighted-F1 statistics over the seeds run so far."""
  rows = []
  for cell in cells:
    for kind in cell.models:
      f1 = [r["f1"] for r in runs if r["cell"] == cell.key and r["model"] == kind]
      if f1:
        rows.append({"cell": cell.key, "augmentation": cell.augmentation, "model": kind,
                     **t_interval(f1), "values": f1})
  return rows


def _pct(value: float) -> str:
  return "–" if math.isnan(value) else f"{100 * value:.2f}"


def markdown_table(rows: Sequence[dict], *, title: str) -> str:
  """The ablation table: weighted F1 (%) per model and augmentation."""
  lines = [f"# {title}", "",
           "Weighted F1 on the test split (%), over seeds: mean, sample standard deviation and "
           "95 % confidence interval of the mean (Student's t).", "",
           "| Model | CNN augmentation | Seeds | Mean F1 | Std | 95 % CI |",
           "|---|---|---|---|---|---|"]
  for r in rows:
    ci = "–" if math.isnan(r["low"]) else f"[{_pct(r['low'])}, {_pct(r['high'])}]"
    augmentation = "n/a (features only)" if r["model"] == "dnn" else r["augmentation"]
    lines.append(f"| {MODELS[r['model']]} | {augmentation} | {r['n']} | {_pct(r['mean'])} | "
                 f"{_pct(r['std'])} | {ci} |")
  return "\n".join(lines) + "\n"


def plot(rows: Sequence[dict], path: Path, *, title: str) -> Path:
  """Mean weighted F1 with 95 % confidence intervals, one bar per table row, each seed a dot.

  Intervals are drawn clipped to [0, 100]; the table keeps their exact ends.
  """
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt

  colors = {"dnn": "tab:gray", "cnn": "tab:blue", "hybrid": "tab:green",
            "hybrid_finetuned": "tab:orange"}
  labels = [f"{MODELS[r['model']]} | {r['augmentation']}" for r in rows]
  means = np.array([100 * r["mean"] for r in rows])
  errors = np.array([[0.0 if math.isnan(r["low"]) else 100 * (r["mean"] - r["low"]) for r in rows],
                     [0.0 if math.isnan(r["high"]) else 100 * (r["high"] - r["mean"])
                      for r in rows]])
  fig, ax = plt.subplots(figsize=(9, 0.38 * len(rows) + 1.4))
  y = np.arange(len(rows))[::-1]
  ax.barh(y, means, xerr=errors, color=[colors[r["model"]] for r in rows], capsize=3, alpha=0.8)
  for position, r in zip(y, rows):
    values = 100 * np.asarray(r["values"])
    ax.plot(values, np.full(values.shape, position), "o", color="black", markersize=3,
            label="one seed" if position == y[0] else None)
  ax.legend(loc="lower right", fontsize=8)
  ax.set_yticks(y, labels, fontsize=8)
  ax.set_xlabel("weighted F1 on the test split (%): mean, 95 % CI over seeds, each seed")
  ax.set_xlim(0, 100)
  ax.set_title(title, fontsize=10)
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def run(cells: Sequence[Cell], *, seeds: Sequence[int], dataset: str, out: Path, data_dir=None,
        clips_per_quadrant: int = 40, workers: int | None = None,
        log: Callable[[str], Any] = print) -> dict[str, Path]:
  """Runs (or resumes) the grid and writes ``runs.jsonl``, ``ablations.md/.json/.png``.

  Args:
    cells: the grid (see :func:`ablation_grid`).
    seeds: repetition seeds.
    dataset: ``"synthetic"`` or a prepared dataset name.
    out: output directory; repetitions already in its ``runs.jsonl`` are skipped.
    data_dir: the prepared store's root.
    clips_per_quadrant: size of the synthetic set.
    workers: feature-extraction processes.
    log: progress sink.

  Returns:
    The written paths by kind.
  """
  out.mkdir(parents=True, exist_ok=True)
  runs_path = out / "runs.jsonl"
  runs = _load_runs(runs_path)
  done = {(r["cell"], r["seed"]) for r in runs}
  from tqdm import tqdm
  todo = [(cell, seed) for cell in cells for seed in seeds if (cell.key, seed) not in done]
  from merjax.inputs.prepare import prepare_inputs
  unaugmented = {}  # the inputs without augmentation do not depend on the seed: made once

  def prepare(config: Config):
    if config.augment.mode != "none" and config.augment.transforms:
      return prepare_inputs(dataset, config=config, data_dir=data_dir,
                            clips_per_quadrant=clips_per_quadrant, workers=workers, log=log)
    if not unaugmented:
      unaugmented["inputs"] = prepare_inputs(dataset, config=config, data_dir=data_dir,
                                             clips_per_quadrant=clips_per_quadrant,
                                             workers=workers, log=log)
    return unaugmented["inputs"]

  for cell, seed in tqdm(todo, desc="ablation runs", unit="run", file=sys.stderr):
    log(f"== {cell.augmentation}, seed {seed}")
    new = run_cell(cell, seed, prepare=prepare, log=log)
    with runs_path.open("a") as f:
      for r in new:
        f.write(json.dumps(r) + "\n")
    runs += new
  rows = summarise(cells, [r for r in runs if r["seed"] in set(seeds)])
  title = f"Ablations on {dataset} ({len(seeds)} seeds)"
  paths = {"runs": runs_path, "markdown": out / "ablations.md", "json": out / "ablations.json",
           "png": out / "ablations.png"}
  paths["markdown"].write_text(markdown_table(rows, title=title))
  paths["json"].write_text(json.dumps({"dataset": dataset, "seeds": list(seeds), "rows": rows,
                                       "configs": {c.key: c.config.to_dict() for c in cells}},
                                      indent=2) + "\n")
  plot(rows, paths["png"], title=title)
  return paths


def main(argv: Sequence[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--dataset", default="merge:audio_balanced",
                      help="prepared dataset name, or 'synthetic' (default: %(default)s)")
  parser.add_argument("--data-dir", default=None, help="root of the prepared datasets")
  parser.add_argument("--out", default="runs/ablations", help="output directory")
  parser.add_argument("--seeds", type=int, default=None,
                      help="repetitions per cell (default: 5; 2 with --quick)")
  parser.add_argument("--first-seed", type=int, default=0, help="seed of the first repetition")
  parser.add_argument("--cells", nargs="+", default=None,
                      help="subset of cells by key: none, " + ", ".join(TRANSFORMS)
                      + ", offline, online (default: all)")
  parser.add_argument("--quick", action="store_true",
                      help="synthetic 3-second clips, few epochs and 2 seeds: minutes on a CPU")
  parser.add_argument("--max-epochs", type=int, default=None,
                      help="cap on epochs per stage (quick default: 12)")
  parser.add_argument("--clips-per-quadrant", type=int, default=None,
                      help="synthetic set size (quick default: 24)")
  parser.add_argument("--workers", type=int, default=None,
                      help="feature-extraction processes (default: up to 4)")
  parser.add_argument("--quiet", action="store_true", help="no per-epoch log lines")
  from merjax.commands._options import add_feature_arguments
  add_feature_arguments(parser)
  args = parser.parse_args(argv)

  from merjax.errors import MerjaxError
  dataset = "synthetic" if args.quick else args.dataset
  base = experiment(args.dataset)
  seeds_count = args.seeds if args.seeds is not None else (2 if args.quick else 5)
  if args.quick:
    base = quick(base, max_epochs=args.max_epochs or 12)
  elif args.max_epochs is not None:
    base = base.replace(**{s: base.stage(s).replace(max_epochs=args.max_epochs)
                           for s in STAGES})
  from merjax.features.source import features_config
  base = features_config(base, features=args.features, table=args.table,
                         id_column=args.id_column)
  cells = ablation_grid(base)
  if args.cells is not None:
    unknown = set(args.cells) - {c.key for c in cells}
    if unknown:
      raise MerjaxError(f"unknown cell(s) {sorted(unknown)}; known: {[c.key for c in cells]}")
    cells = [c for c in cells if c.key in args.cells]
  if seeds_count < 1:
    raise MerjaxError(f"--seeds must be at least 1, got {seeds_count}")
  seeds = list(range(args.first_seed, args.first_seed + seeds_count))
  clips = args.clips_per_quadrant or (24 if args.quick else 40)
  log = (lambda line: None) if args.quiet else print
  paths = run(cells, seeds=seeds, dataset=dataset, out=Path(args.out), data_dir=args.data_dir,
              clips_per_quadrant=clips, workers=args.workers, log=log)
  print(paths["markdown"].read_text())
  print(f"wrote {', '.join(str(p) for p in paths.values())}")
  return 0


if __name__ == "__main__":
  try:
    sys.exit(main())
  except Exception as error:  # MerjaxError: one line, exit code 2
    from merjax.errors import MerjaxError
    if isinstance(error, MerjaxError):
      print(f"error: {error}", file=sys.stderr)
      sys.exit(2)
    raise
