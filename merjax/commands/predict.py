"""``merjax predict``: the quadrant of audio files, from a saved model."""

from __future__ import annotations


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "predict", help="predict the quadrant of audio files",
      description="Decode each file (16 kHz mono, fixed to the model's clip length), compute its "
      "log-mel and features exactly as in training, and print the predicted quadrant with its "
      "four probabilities. Files that cannot be decoded get a one-line error; the others are "
      "still predicted, and the exit code is 1 if any failed.")
  parser.add_argument("files", nargs="+", metavar="FILE", help="audio files")
  parser.add_argument("--model", required=True, help="model directory from `merjax train`")
  parser.add_argument("--which", choices=("hybrid", "cnn", "dnn"), default="hybrid",
                      help="classifier to use (default: %(default)s)")
  parser.add_argument("--json", action="store_true", help="print JSON instead of text")
  parser.add_argument("--workers", type=int, default=1,
                      help="feature-extraction processes (default: %(default)s)")
  parser.set_defaults(func=run)


def run(args) -> int:
  import sys

  from merjax.runs import format_predictions, predict_files
  predictions = predict_files(args.files, model_dir=args.model, which=args.which,
                              workers=args.workers)
  print(format_predictions(predictions, as_json=args.json))
  failed = [p for p in predictions if p.error is not None]
  if failed:
    print(f"merjax predict: {len(failed)} of {len(predictions)} file(s) could not be decoded",
          file=sys.stderr)
  return 1 if failed else 0
