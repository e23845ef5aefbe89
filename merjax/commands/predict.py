"""``merjax predict``: song-level quadrants of files, folders or lists, from a saved model."""

from __future__ import annotations


def register(subparsers) -> None:
  from merjax.inference.songs import DEFAULT_MAX_WINDOWS
  parser = subparsers.add_parser(
      "predict", help="predict the quadrant of songs (files, folders or a list of paths)",
      description="Decode the windows of each song that --segment selects (16 kHz mono, the "
      "model's clip length; short songs are zero-padded and marked), compute their log-mel on "
      "the device and, for dnn/hybrid, their handcrafted features in worker processes, and "
      "print or write each song's quadrant with the four probabilities averaged over its "
      "windows. Songs come out in input order (folders walked in sorted order). With --out, "
      "each song is appended as it finishes and a rerun skips the songs already there. Silent "
      "or near-silent input and features that came out NaN get a warning. Songs that cannot be "
      "decoded get a one-line error; the others are still predicted, and the exit code is 1 "
      "if any failed.")
  parser.add_argument("inputs", nargs="+", metavar="PATH",
                      help="audio files, folders (searched recursively) or .txt/.m3u lists of "
                      "paths")
  parser.add_argument("--model", required=True, help="model directory from `merjax train`")
  parser.add_argument("--which", choices=("hybrid", "cnn", "dnn"), default="hybrid",
                      help="classifier to use (default: %(default)s)")
  parser.add_argument("--segment", choices=("first", "middle", "windows"), default="windows",
                      help="what of each song the model sees: the first clip, the middle "
                      "clip, or clip-long windows spread evenly from start to end, their "
                      "probabilities averaged (default: %(default)s)")
  parser.add_argument("--hop", type=float, default=None, metavar="SECONDS",
                      help="largest distance between consecutive windows (default: the "
                      "model's clip length, 30 s)")
  parser.add_argument("--max-windows", type=int, default=DEFAULT_MAX_WINDOWS,
                      help="cap on windows per song; longer songs get this many, spread "
                      "evenly (default: %(default)s)")
  parser.add_argument("--per-window", action="store_true",
                      help="also output each window's probabilities")
  parser.add_argument("--out", default=None, metavar="RESULTS.jsonl|RESULTS.csv",
                      help="append each song to this file as it finishes; a rerun resumes it")
  parser.add_argument("--json", action="store_true",
                      help="print one JSON object per song (JSON Lines) instead of text")
  parser.add_argument("--workers", type=int, default=None,
                      help="decoding and feature processes (default: cores, at most 4)")
  parser.add_argument("--batch-size", type=int, default=None,
                      help="windows per device batch (default: 1 on CPU, where larger batches "
                      "only add memory traffic, 16 on GPU/TPU)")
  parser.add_argument("--no-progress", action="store_true", help="no progress bar")
  from merjax.commands._options import add_model_execution_arguments
  add_model_execution_arguments(parser.add_argument_group(
      "execution (default: the model's own; a model trained with one setting predicts with "
      "another)"))
  parser.set_defaults(func=run)


def run(args) -> int:
  import json
  import os
  import sys

  from merjax.inference.predict import format_text, predict_library

  workers = args.workers if args.workers is not None else min(4, os.cpu_count() or 1)

  def show(prediction) -> None:
    if args.out is None:
      print(json.dumps(prediction.to_dict(per_window=args.per_window)) if args.json
            else format_text(prediction), flush=True)

  summary = predict_library(args.inputs, model_dir=args.model, out=args.out, which=args.which,
                            segment=args.segment, hop_seconds=args.hop,
                            max_windows=args.max_windows, per_window=args.per_window,
                            workers=workers, batch_size=args.batch_size,
                            cnn_impl=args.cnn_impl, dtype=args.dtype,
                            # lines on a terminal would tear the bar: it shows with --out or
                            # when stdout goes to a file or pipe
                            progress=not args.no_progress and (args.out is not None
                                                               or not sys.stdout.isatty()),
                            on_prediction=show)
  if args.out is not None:
    print(f"{summary.predicted} song(s) predicted, {summary.failed} failed, {summary.skipped} "
          f"already in {args.out}", file=sys.stderr)
  if summary.failed:
    print(f"merjax predict: {summary.failed} of {summary.found - summary.skipped} song(s) could "
          "not be decoded", file=sys.stderr)
  return 1 if summary.failed else 0
