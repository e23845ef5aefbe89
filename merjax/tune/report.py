"""A stage search's results table (Markdown, CSV) and its validation-accuracy plot."""

from __future__ import annotations

import csv
import os
from pathlib import Path

from merjax.tune.search import StageSearch, TrialRecord

COLUMNS = ("trial", "optimizer", "learning_rate", "batch_size", "epochs", "best_epoch",
           "best_val_accuracy", "stop_reason", "status", "error", "chosen")


def _row(trial: TrialRecord, best_number: int) -> dict:
  status = "failed" if trial.error else ("finished" if trial.status == "TERMINATED"
                                         else trial.status.lower())
  return {"trial": trial.number, **trial.hparams, "epochs": trial.epochs,
          "best_epoch": trial.best_epoch, "best_val_accuracy": trial.best_val_accuracy,
          "stop_reason": trial.stop_reason or "", "status": status, "error": trial.error or "",
          "chosen": trial.number == best_number}


def trials_table(search: StageSearch) -> str:
  """The trials as a Markdown table, the chosen one in bold, then a line naming it."""
  lines = ["| Trial | Optimizer | Learning rate | Batch size | Epochs | Best epoch | "
           "Best val. accuracy | Stop reason | Status |", "|---|" + "---|" * 8]
  for trial in search.trials:
    row = _row(trial, search.best_number)
    accuracy = ("" if row["best_val_accuracy"] is None
                else f"{100 * row['best_val_accuracy']:.2f}%")
    cells = [str(row["trial"]), str(row["optimizer"]), f"{row['learning_rate']:g}",
             str(row["batch_size"]), str(row["epochs"]), str(row["best_epoch"] or ""), accuracy,
             row["stop_reason"],
             (f"failed: {row['error']}" if row["error"] else row["status"]).replace("|", "/")]
    if row["chosen"]:
      cells = [f"**{c}**" if c else c for c in cells]
    lines.append("| " + " | ".join(cells) + " |")
  best = search.best
  assert best.best_val_accuracy is not None  # the chosen trial succeeded
  lines += ["", f"Chosen: trial {best.number} ({best.hparams['optimizer']}, learning rate "
            f"{best.hparams['learning_rate']:g}, batch size {best.hparams['batch_size']}), "
            f"best validation accuracy {100 * best.best_val_accuracy:.2f}% at epoch "
            f"{best.best_epoch}."]
  return "\n".join(lines)


def plot_trials(search: StageSearch, path: str | os.PathLike) -> Path:
  """Validation accuracy per epoch of every trial; the chosen trial drawn thick."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import matplotlib.ticker

  fig, ax = plt.subplots(figsize=(7, 4))
  for trial in search.trials:
    if not trial.history:
      continue
    epochs = [h["epoch"] for h in trial.history]
    chosen = trial.number == search.best_number
    label = (f"{trial.number}: {trial.hparams['optimizer']} {trial.hparams['learning_rate']:g} "
             f"/{trial.hparams['batch_size']}" + (" (failed)" if trial.error else ""))
    ax.plot(epochs, [h["val_accuracy"] for h in trial.history], label=label,
            linewidth=2.5 if chosen else 1.0, linestyle=":" if trial.error else "-",
            marker="o" if len(epochs) < 20 else None, markersize=3)
  ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
  ax.set_xlabel("epoch")
  ax.set_ylabel("validation accuracy")
  ax.set_ylim(0, 1)
  ax.set_title(f"{search.stage}: {search.searcher} search, {len(search.trials)} trials")
  ax.legend(fontsize=7, loc="best", ncol=2)
  fig.tight_layout()
  path = Path(path)
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return path


def write_stage_report(search: StageSearch, out_dir: str | os.PathLike) -> dict[str, Path]:
  """Writes ``trials.md``, ``trials.csv`` and ``trials.png`` (``search.json`` holds the rest).

  Returns:
    The written paths by kind (``markdown``, ``csv``, ``png``).
  """
  out_dir = Path(out_dir)
  out_dir.mkdir(parents=True, exist_ok=True)
  paths = {"markdown": out_dir / "trials.md", "csv": out_dir / "trials.csv",
           "png": out_dir / "trials.png"}
  paths["markdown"].write_text(f"# {search.stage} search\n\n{trials_table(search)}\n")
  with open(paths["csv"], "w", newline="") as f:
    writer = csv.DictWriter(f, fieldnames=COLUMNS)
    writer.writeheader()
    for trial in search.trials:
      writer.writerow(_row(trial, search.best_number))
  plot_trials(search, paths["png"])
  return paths
