"""``merjax prepare``: decode a dataset once into the store that training and evaluation read."""

from __future__ import annotations

import argparse


def _common(parser: argparse.ArgumentParser) -> None:
  parser.add_argument("--data-dir", default=None,
                      help="where prepared stores live (default: $MERJAX_DATA_DIR or "
                      "~/merjax_data)")
  parser.add_argument("--on-error", choices=("stop", "skip"), default="stop",
                      help="stop at any problem, listing them all (default), or skip the songs "
                           "affected and list them in the summary")
  parser.add_argument("--workers", type=int, default=None,
                      help="decoding processes (default: one per CPU core)")
  parser.add_argument("--sample-rate", type=int, default=16000,
                      help="target sampling rate in Hz (default: 16000, the paper's)")
  parser.add_argument("--clip-seconds", type=float, default=30.0,
                      help="clip length in seconds; longer audio is cropped, shorter zero-padded "
                           "(default: 30)")
  parser.add_argument("--overwrite", action="store_true",
                      help="rebuild an existing store (decoded clips still in the cache are "
                      "reused)")
  parser.add_argument("--keep-cache", action="store_true",
                      help="keep the per-clip decode cache after the store is written (makes "
                           "preparing the other split variant of the same files fast)")
  parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "prepare", help="decode a dataset (MERGE, 4QAED or your folder) into a prepared store",
      description="Reads a dataset as released, checks it, decodes every clip to 16 kHz mono in "
                  "parallel worker processes (resumable: a rerun reuses finished clips) and "
                  "writes a TFDS array_record store, then prints the songs per split and "
                  "quadrant and every skipped file with its reason.")
  kinds = parser.add_subparsers(dest="kind", metavar="DATASET", required=True)

  merge = kinds.add_parser(
      "merge", help="a MERGE subset (Zenodo record 13939205)",
      description="MERGE Audio/Bimodal Complete/Balanced, from the unzipped folder, the zip, or "
                  "a folder holding either. Stored as merge:<subset>[:<split>].")
  merge.add_argument("--subset", required=True,
                     help="audio_complete, audio_balanced, bimodal_complete or bimodal_balanced")
  merge.add_argument("--manual-dir", required=True,
                     help="the downloaded MERGE_<Subset>.zip, its unzipped folder, or a folder "
                          "containing either")
  merge.add_argument("--split", default="70_15_15",
                     help="TVT split variant: 70_15_15 (the paper's, default) or 40_30_30")
  _common(merge)

  fourqaed = kinds.add_parser(
      "4qaed", help="the 4QAED dataset (Panda et al. 2018)",
      description="4QAED: MP3s in Q1..Q4 with panda_dataset_taffc_annotations.csv. A stratified "
                  "70-15-15 split is drawn once and saved next to the data. Stored as 4qaed.")
  fourqaed.add_argument("--manual-dir", required=True,
                        help="the 4QAED folder, its zip, or a folder containing either")
  fourqaed.add_argument("--seed", type=int, default=0, help="seed of the drawn split (default 0)")
  _common(fourqaed)

  folder = kinds.add_parser(
      "folder", help="your own clips in Q1..Q4 folders, or a CSV of path, quadrant, split",
      description="A folder (or zip) with Q1..Q4 sub-folders, optionally below "
                  "train/validate/test folders, or a CSV with columns path, quadrant and "
                  "optionally split. Without splits a stratified 70-15-15 split is drawn and "
                  "saved next to the data. Stored as folder:<name>.")
  folder.add_argument("--path", required=True, help="the folder, zip or CSV file")
  folder.add_argument("--name", required=True,
                      help="the dataset's name; later commands use --dataset folder:<name>")
  folder.add_argument("--seed", type=int, default=0, help="seed of the drawn split (default 0)")
  _common(folder)
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  from merjax.data.prepare import prepare
  from merjax.data.store import default_data_dir
  from merjax.parallel.files import check_writable

  check_writable(args.data_dir or default_data_dir(), what="--data-dir")

  if args.kind == "merge":
    dataset, source, seed = f"merge:{args.subset}:{args.split}", args.manual_dir, 0
  elif args.kind == "4qaed":
    dataset, source, seed = "4qaed", args.manual_dir, args.seed
  else:
    dataset, source, seed = f"folder:{args.name}", args.path, args.seed
  summary = prepare(dataset, manual_dir=source, data_dir=args.data_dir, on_error=args.on_error,
                    workers=args.workers, sample_rate=args.sample_rate,
                    clip_seconds=args.clip_seconds, seed=seed, overwrite=args.overwrite,
                    keep_cache=args.keep_cache, progress=not args.no_progress)
  print(summary.format())
  name = summary.dataset.removesuffix(":70_15_15")
  data_dir = f" --data-dir {args.data_dir}" if args.data_dir else ""
  print(f"\nuse it with --dataset {name}{data_dir}")
  return 0
