"""Reproduces the paper's protocol on the four MERGE audio datasets and compares with its tables.

Louro et al. (2024), Section 3.4: per dataset, a Bayesian search of 10 trials for each stage
(CNN, DNN, then the fusion classifier on the frozen best branches), up to 200 epochs per trial
with the paper's stopping rules; the tuned hybrid is scored on the 70-15-15 test split.
For each dataset this writes the chosen hyperparameters next to Table 2, the test F1,
precision and recall next to Table 3, and the confusion matrix next to Tables 4-7 (Markdown and
PNG); ``summary.md`` puts all datasets side by side.

Usage::

    merjax prepare ...                       # the four MERGE audio stores, once
    python experiments/paper.py --data-dir DIR --out runs/paper [--address HOST:PORT]
    python experiments/paper.py --quick      # the same code on synthetic data, in minutes

Configurations are code: :func:`experiment` returns a dataset's protocol and :func:`quick`
overrides it for the smoke run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from merjax.config import PAPER_DATASETS, STAGES, Config, paper_config, paper_hparams

# Table 3 (test split, %): F1, precision, recall.
PAPER_TABLE3: dict[str, tuple[float, float, float]] = {
    "merge_audio_complete": (68.84, 69.52, 68.80),
    "merge_audio_balanced": (77.62, 78.11, 77.89),
    "merge_bimodal_complete": (73.13, 75.45, 74.40),
    "merge_bimodal_balanced": (70.00, 69.99, 70.33),
}
# Tables 4-7: confusion matrices in % of each actual quadrant (rows Q1..Q4, columns predicted).
PAPER_CONFUSION: dict[str, list[list[float]]] = {
    "merge_audio_complete": [[70.2, 10.9, 9.4, 9.4], [7.1, 92.1, 0.8, 0.0],
                             [3.9, 2.6, 55.3, 38.2], [18.3, 0.9, 21.7, 59.13]],
    "merge_audio_balanced": [[77.9, 7.6, 3.8, 10.9], [6.0, 93.2, 0.9, 0.0],
                             [2.8, 1.4, 68.8, 27.0], [8.4, 0.0, 18.9, 72.6]],
    "merge_bimodal_complete": [[73.9, 5.7, 6.8, 13.6], [7.1, 92.9, 0.0, 0.0],
                               [5.7, 0.9, 58.5, 34.9], [5.1, 0.0, 23.1, 71.8]],
    "merge_bimodal_balanced": [[74.7, 5.3, 8.0, 12.0], [9.1, 90.9, 0.0, 0.0],
                               [3.5, 1.2, 58.8, 36.5], [14.3, 0.0, 30.2, 55.6]],
}
TITLES = {"merge_audio_complete": "MERGE Audio Complete",
          "merge_audio_balanced": "MERGE Audio Balanced",
          "merge_bimodal_complete": "MERGE Bimodal Complete",
          "merge_bimodal_balanced": "MERGE Bimodal Balanced",
          "synthetic": "Synthetic quadrants (--quick)"}
# The quick run has no paper numbers of its own; it is laid out against Audio Balanced's.
QUICK_REFERENCE = "merge_audio_balanced"
QUICK_CLIPS_PER_QUADRANT = 16


def experiment(dataset: str = "merge_audio_balanced") -> Config:
  """The paper's protocol for one MERGE audio dataset.

  Table 2's values fill the stage settings (they only matter outside the search); the search
  is 10 Gaussian-process trials per stage over the paper's space, starting at its lower end,
  with Keras Tuner's default of 3 random start-up trials per hyperparameter (9 of the 10,
  the lower-end trial included; ``startup_trials=None``), each trial up to 200 epochs with
  patience 15 and the 0.90 training-accuracy rule, on the paper's x5 augmented CNN training
  set.
  """
  config = paper_config(dataset)
  return config.replace(tune=config.tune.replace(trials=10, searcher="gp", startup_trials=None))


def quick(*, seed: int = 0) -> Config:
  """``--quick``: the protocol on 3-second synthetic clips, 3 trials per stage of at most
  12 epochs over batch sizes {16, 32} (larger batches are mostly padding on 44 training clips),
  without augmentation."""
  config = experiment(QUICK_REFERENCE)
  stages = {stage: config.stage(stage).replace(max_epochs=12, patience=4) for stage in STAGES}
  return config.replace(
      audio=config.audio.replace(clip_seconds=3.0),
      augment=config.augment.replace(mode="none"), seed=seed, data_seed=seed,
      tune=config.tune.replace(trials=3, startup_trials=2, batch_sizes=(16, 32)),
      **stages)


def _pct(value: float | None) -> str:
  return "" if value is None else f"{value:.2f}%"


def hparams_comparison(dataset: str, searches: dict, *, reference: str) -> str:
  """Our chosen hyperparameters per stage next to the paper's Table 2."""
  lines = [f"| Stage | Ours: batch | optimizer | learning rate | val. acc. | "
           f"Paper ({TITLES[reference]}): batch | optimizer | learning rate |",
           "|---|---|---|---|---|---|---|---|"]
  for stage in STAGES:
    best = searches[stage].best
    paper = paper_hparams(reference, stage)
    lines.append(f"| {stage} | {best.hparams['batch_size']} | {best.hparams['optimizer']} | "
                 f"{best.hparams['learning_rate']:g} | {100 * best.best_val_accuracy:.2f}% | "
                 f"{paper.batch_size} | {paper.optimizer} | {paper.learning_rate:g} |")
  return "\n".join(lines)


def results_comparison(rows: dict[str, dict], *, reference: dict[str, str]) -> str:
  """Test F1 / precision / recall of our tuned hybrid next to Table 3, one row per dataset."""
  lines = ["| Dataset | F1 (ours) | F1 (paper) | Precision (ours) | Precision (paper) | "
           "Recall (ours) | Recall (paper) | Accuracy (ours) |", "|---|" + "---|" * 7]
  for dataset, metrics in rows.items():
    paper = PAPER_TABLE3[reference[dataset]]
    lines.append(f"| {TITLES[dataset]} | {_pct(100 * metrics['f1'])} | {_pct(paper[0])} | "
                 f"{_pct(100 * metrics['precision'])} | {_pct(paper[1])} | "
                 f"{_pct(100 * metrics['recall'])} | {_pct(paper[2])} | "
                 f"{_pct(100 * metrics['accuracy'])} |")
  return "\n".join(lines)


def write_dataset_report(dataset: str, outcome, out: Path, *, reference: str) -> dict:
  """Writes ``paper_comparison.md`` and ``confusion_vs_paper.png`` for one dataset."""
  from merjax.metrics.classification import confusion_table, plot_confusion

  ours = outcome.test["hybrid"]
  f1, precision, recall = PAPER_TABLE3[reference]
  paper = {"confusion_matrix": PAPER_CONFUSION[reference], "f1": f1 / 100,
           "precision": precision / 100, "recall": recall / 100}
  note = ("" if reference == dataset else
          f"\n_The paper has no numbers for this data; {TITLES[reference]} is shown for the "
          f"layout only, the values are not comparable._\n")
  sections = [
      f"# {TITLES[dataset]}: tuned hybrid vs. the paper", note,
      "## Chosen hyperparameters (Table 2)", "",
      hparams_comparison(dataset, outcome.searches, reference=reference), "",
      "## Test split (Table 3)", "",
      results_comparison({dataset: ours}, reference={dataset: reference}), "",
      "## Confusion matrices (Tables 4-7)", "",
      confusion_table(ours, title="Ours (tuned hybrid)"), "",
      confusion_table(paper, title=f"Paper ({TITLES[reference]})"), "",
      "Per-stage trials: `cnn/trials.md`, `dnn/trials.md`, `fusion/trials.md`; the CNN and DNN "
      "alone: `test/metrics.md`.", ""]
  (out / "paper_comparison.md").write_text("\n".join(sections))
  plot_confusion({"ours": ours, f"paper ({TITLES[reference]})": paper},
                 out / "confusion_vs_paper.png")
  return ours


def write_summary(results: dict[str, dict], searches: dict[str, dict], out: Path, *,
                  reference: dict[str, str], seconds: float) -> Path:
  """``summary.md``: every dataset's test metrics and chosen hyperparameters next to the paper's."""
  lines = ["# Hybrid MER, paper protocol: ours vs. Louro et al. (2024)", "",
           "## Test split, tuned hybrid (Table 3)", "",
           results_comparison(results, reference=reference), ""]
  for dataset in results:
    lines += [f"## {TITLES[dataset]}: chosen hyperparameters (Table 2)", "",
              hparams_comparison(dataset, searches[dataset], reference=reference[dataset]),
              ""]
  if any(reference[d] != d for d in results):
    lines += ["_Synthetic data has no paper numbers; the paper's MERGE Audio Balanced values "
              "only show the layout._", ""]
  lines += [f"Total time: {seconds / 60:.1f} min.", ""]
  path = out / "summary.md"
  path.write_text("\n".join(lines))
  return path


def run(*, datasets: list[str], out: Path, config_for: Callable[[str], Config],
        data_dir: str | None = None, clips_per_quadrant: int = QUICK_CLIPS_PER_QUADRANT,
        resume: bool = False, log: Callable[[str], Any] = print, **tune_kwargs) -> dict:
  """Tunes and evaluates each dataset, then writes the per-dataset reports and the summary.

  Args:
    datasets: keys of :data:`TITLES` (``"synthetic"`` for the quick run).
    out: the experiment's root; each dataset gets ``out/<dataset>``.
    config_for: dataset -> its :class:`~merjax.config.Config`.
    data_dir: the prepared stores' root.
    clips_per_quadrant: size of the synthetic set.
    resume: continue an interrupted run in ``out``.
    log: progress sink.
    **tune_kwargs: passed to :func:`merjax.tune.tune_dataset` (``address``, ``num_cpus``,
      ``cpus_per_trial``, ``gpus_per_trial``, ``workers``).

  Returns:
    Test metrics of the tuned hybrid per dataset.
  """
  from merjax.tune import ray_session, tune_dataset

  started = time.perf_counter()
  out.mkdir(parents=True, exist_ok=True)
  reference = {d: (d if d in PAPER_TABLE3 else QUICK_REFERENCE) for d in datasets}
  results, searches = {}, {}
  # One Ray session serves every dataset (tune_dataset joins a running one).
  with ray_session(address=tune_kwargs.get("address"), num_cpus=tune_kwargs.get("num_cpus")):
    for dataset in datasets:
      log(f"== {TITLES[dataset]} ==")
      name = "synthetic" if dataset == "synthetic" else dataset.replace("_", ":", 1)
      outcome = tune_dataset(name, config=config_for(dataset), out=out / dataset,
                             data_dir=data_dir, clips_per_quadrant=clips_per_quadrant,
                             resume=resume, log=log, **tune_kwargs)
      searches[dataset] = outcome.searches
      results[dataset] = write_dataset_report(dataset, outcome, out / dataset,
                                              reference=reference[dataset])
  seconds = time.perf_counter() - started
  (out / "results.json").write_text(json.dumps(
      {d: {"ours": results[d], "paper": dict(zip(("f1", "precision", "recall"),
                                                 PAPER_TABLE3[reference[d]])),
           "paper_dataset": reference[d],
           "hparams": {s: searches[d][s].best.hparams for s in STAGES}}
       for d in results}, indent=2) + "\n")
  summary = write_summary(results, searches, out, reference=reference, seconds=seconds)
  log(summary.read_text())
  log(f"wrote {out} in {seconds / 60:.1f} min")
  return results


def main(argv: list[str] | None = None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--out", default="runs/paper", help="output root (default: %(default)s)")
  parser.add_argument("--data-dir", default=None,
                      help="root of the prepared stores (default: $MERJAX_DATA_DIR or "
                      "~/merjax_data)")
  parser.add_argument("--datasets", nargs="+", choices=PAPER_DATASETS, default=PAPER_DATASETS,
                      help="which MERGE datasets (default: all four)")
  parser.add_argument("--quick", action="store_true",
                      help="the same protocol on synthetic data with few trials and epochs")
  parser.add_argument("--address", default=None, help="join a Ray cluster at HOST:PORT")
  parser.add_argument("--num-cpus", type=int, default=None,
                      help="CPUs of the embedded Ray session (default: all cores)")
  parser.add_argument("--cpus-per-trial", type=float, default=1.0,
                      help="CPUs per trial (default: %(default)s)")
  parser.add_argument("--gpus-per-trial", type=float, default=0.0,
                      help="GPUs per trial, a fraction shares one (default: %(default)s)")
  parser.add_argument("--max-concurrent", type=int, default=None,
                      help="trials at once (default: 1, the paper's sequential search)")
  parser.add_argument("--workers", type=int, default=None,
                      help="feature-extraction processes (default: cores, at most 4)")
  parser.add_argument("--resume", action="store_true",
                      help="continue an interrupted run in --out")
  parser.add_argument("--seed", type=int, default=0, help="seed of everything (default: 0)")
  parser.add_argument("--startup-trials", type=int, default=None,
                      help="random start-up trials per search, the lower-end trial included "
                      "(default: Keras Tuner's 3 per hyperparameter, 9; 2 with --quick)")
  from merjax.commands._options import add_feature_arguments
  add_feature_arguments(parser)
  args = parser.parse_args(argv)
  from merjax.errors import MerjaxError
  from merjax.features.source import features_config
  try:  # read and hash the table once, for every dataset
    sources = features_config(Config(), features=args.features, table=args.table,
                              id_column=args.id_column)
  except MerjaxError as error:
    print(f"paper.py: error: {error}", file=sys.stderr)
    return 2
  if args.startup_trials is not None and args.startup_trials < 1:
    print(f"paper.py: error: --startup-trials must be at least 1, got {args.startup_trials}",
          file=sys.stderr)
    return 2

  def config_for(dataset: str) -> Config:
    config = quick(seed=args.seed) if args.quick else experiment(dataset)
    config = config.replace(features_backend=sources.features_backend,
                            features_table=sources.features_table)
    if args.startup_trials is not None:
      config = config.replace(tune=config.tune.replace(startup_trials=args.startup_trials))
    if not args.quick and args.seed:
      config = config.replace(seed=args.seed)
    if args.max_concurrent is not None:
      config = config.replace(tune=config.tune.replace(max_concurrent=args.max_concurrent))
    return config

  try:
    run(datasets=["synthetic"] if args.quick else list(args.datasets), out=Path(args.out),
        config_for=config_for, data_dir=args.data_dir, resume=args.resume,
        address=args.address, num_cpus=args.num_cpus, cpus_per_trial=args.cpus_per_trial,
        gpus_per_trial=args.gpus_per_trial, workers=args.workers)
  except MerjaxError as error:
    print(f"paper.py: error: {error}", file=sys.stderr)
    return 2
  return 0


if __name__ == "__main__":
  sys.exit(main())
