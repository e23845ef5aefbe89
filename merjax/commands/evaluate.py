"""``merjax evaluate``: test metrics of a saved model on a prepared dataset."""

from __future__ import annotations

from merjax.commands._options import add_dataset_arguments, add_feature_arguments


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "evaluate", help="report a saved model's metrics on a dataset split",
      description="Weighted F1/precision/recall, accuracy and the per-quadrant confusion matrix "
      "of the CNN, the DNN and the hybrid of a model directory, on one split of a prepared "
      "dataset; writes metrics.json, metrics.md and confusion.png.")
  parser.add_argument("--model", required=True, help="model directory from `merjax train`")
  add_dataset_arguments(parser, synthetic=False)
  add_feature_arguments(parser, model=True)
  parser.add_argument("--split", choices=("test", "validate", "train"), default="test",
                      help="split to score (default: %(default)s)")
  parser.add_argument("--out", default=None,
                      help="report directory (default: MODEL/eval-DATASET-SPLIT)")
  parser.add_argument("--workers", type=int, default=None,
                      help="feature-extraction processes (default: cores, at most 4)")
  parser.set_defaults(func=run)


def run(args) -> int:
  from merjax.runs.dataset import evaluate_model
  evaluate_model(args.model, args.dataset, data_dir=args.data_dir, split=args.split,
                 out=args.out, workers=args.workers, features=args.features, table=args.table,
                 id_column=args.id_column)
  return 0
