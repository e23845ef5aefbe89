"""``merjax features``: extract (or import) the handcrafted features of a dataset."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "features", help="extract or import the handcrafted features of a dataset",
      description="Extracts the handcrafted features of every song of a prepared dataset (or the "
                  "synthetic set) with the builtin or Essentia backend, in parallel worker "
                  "processes, caching each song's features under the data directory (a rerun "
                  "resumes, a changed backend version recomputes); or imports a CSV table of "
                  "precomputed features (e.g. the authors' 4QAED all_features.csv) and checks "
                  "that it covers every song. Writes one .npz with song ids, names and values.")
  parser.add_argument("--dataset", default=None,
                      help="merge:<subset>[:70_15_15|40_30_30], 4qaed, folder:NAME or synthetic "
                           "(may be omitted with --manifest)")
  parser.add_argument("--backend", choices=("builtin", "essentia", "table"), default="builtin",
                      help="builtin (default), essentia (needs pip install 'merjax[essentia]') "
                           "or table (a CSV given with --table)")
  parser.add_argument("--table", default=None,
                      help="CSV of precomputed features keyed by song id (--backend table)")
  parser.add_argument("--id-column", default=None,
                      help="the table's song-id column (default: Song, else the first column)")
  parser.add_argument("--data-dir", default=None,
                      help="root of the prepared stores and the feature cache (default: "
                           "$MERJAX_DATA_DIR or ~/merjax_data)")
  parser.add_argument("--workers", type=int, default=None,
                      help="extraction processes (default: one per CPU core)")
  parser.add_argument("--out", default=None,
                      help="the .npz to write (default: <data-dir>/features/<dataset>/"
                           "<backend>.npz)")
  parser.add_argument("--manifest", default=None,
                      help="also write the backend's feature manifest (name, dimension, "
                           "description) to this .csv or .json file")
  parser.add_argument("--clips-per-quadrant", type=int, default=40,
                      help="synthetic clips per quadrant (--dataset synthetic only; default 40)")
  parser.add_argument("--seconds", type=float, default=5.0,
                      help="synthetic clip length in seconds (--dataset synthetic only; default 5)")
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the synthetic set (--dataset synthetic only; default 0)")
  parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
  parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
  import os
  from pathlib import Path

  import numpy as np

  from merjax.errors import MerjaxError
  from merjax.features import write_manifest
  from merjax.features.datasets import dataset_features
  from merjax.parallel.files import check_writable

  if args.dataset is None and args.manifest is None:
    raise MerjaxError("give --dataset (features to extract or import) and/or --manifest FILE")
  if args.manifest is not None:
    if args.backend == "table":
      raise MerjaxError("a table's columns have no manifest; --manifest needs --backend "
                        "builtin or essentia")
    path = write_manifest(args.manifest, backend=args.backend)
    print(f"manifest of the {args.backend} features written to {path}")
  if args.dataset is None:
    return 0
  workers = (os.cpu_count() or 1) if args.workers is None else args.workers
  if args.out is not None:
    check_writable(args.out, what="--out", file=True)
  features, directory = dataset_features(
      args.dataset, data_dir=args.data_dir, backend=args.backend, table=args.table,
      id_column=args.id_column, workers=workers, progress=not args.no_progress,
      clips_per_quadrant=args.clips_per_quadrant, seconds=args.seconds, seed=args.seed)
  out = Path(args.out) if args.out else directory / f"{args.backend}.npz"
  if out.is_dir():
    raise MerjaxError(f"--out {out} is a directory; give a file name ending in .npz")
  out.parent.mkdir(parents=True, exist_ok=True)
  features.save(out)
  n_nan = int((~np.isfinite(features.values)).any(axis=0).sum())
  print(f"{args.dataset}: {len(features)} songs x {len(features.names)} {args.backend} features "
        f"({n_nan} columns with NaN/inf) written to {out}")
  return 0
