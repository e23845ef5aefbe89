"""``merjax tune``: the paper's Bayesian hyperparameter search per stage, on Ray Tune."""

from __future__ import annotations

from merjax.commands._options import (
  add_dataset_arguments,
  add_execution_arguments,
  add_feature_arguments,
  add_seed_argument,
  add_set_argument,
)


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "tune", help="search each stage's optimizer, learning rate and batch size (Ray Tune)",
      description="Tune the CNN, DNN and fusion stages as the paper does: per stage, a "
      "Gaussian-process Bayesian search over optimizer {sgd, adam}, learning rate {1e-6..1e-1} "
      "and batch size {16..256}, starting at the lower end of every range, maximising "
      "validation accuracy; each trial trains up to the epoch cap and stops early after 15 "
      "epochs without improvement or once training accuracy exceeds 0.90. The fusion search "
      "freezes the best CNN and DNN. Runs on embedded Ray (loopback only, no dashboard) or "
      "joins a cluster with --address. Writes per stage a results table (Markdown, CSV, "
      "JSON) and a plot; after the fusion stage, the tuned model directory and its test "
      "report.")
  add_dataset_arguments(parser)
  add_feature_arguments(parser)
  parser.add_argument("--out", required=True,
                      help="output directory (Ray experiments, results tables, tuned model)")
  parser.add_argument("--stage", choices=("cnn", "dnn", "fusion", "all"), default="all",
                      help="which search to run; fusion needs the cnn and dnn searches in --out "
                      "(default: %(default)s)")
  parser.add_argument("--trials", type=int, default=None,
                      help="trials per stage (default: the paper's 10)")
  parser.add_argument("--searcher", choices=("gp", "tpe", "random"), default=None,
                      help="gp: Gaussian-process Bayesian optimisation as in Keras Tuner; tpe: "
                      "optuna's TPE; random (default: gp)")
  parser.add_argument("--startup-trials", type=int, default=None,
                      help="random start-up trials before the Gaussian process guides the "
                      "search, the lower-end first trial included (default: Keras Tuner's 3 per "
                      "hyperparameter, i.e. 9; always fewer than --trials)")
  parser.add_argument("--max-concurrent", type=int, default=None,
                      help="trials running at once (default: 1, as the paper's sequential "
                      "search)")
  parser.add_argument("--cpus-per-trial", type=float, default=1.0,
                      help="CPUs Ray reserves for each trial (default: %(default)s)")
  parser.add_argument("--gpus-per-trial", type=float, default=0.0,
                      help="GPUs Ray reserves for each trial; a fraction shares a GPU "
                      "(default: %(default)s)")
  parser.add_argument("--num-cpus", type=int, default=None,
                      help="CPUs of the embedded Ray session (default: all cores)")
  parser.add_argument("--address", default=None,
                      help="join a running Ray cluster at HOST:PORT (from `ray start --head`) "
                      "instead of starting embedded Ray; --out must then be on storage every "
                      "node shares")
  parser.add_argument("--resume", action="store_true",
                      help="continue an interrupted search in --out: finished trials are kept, "
                      "unfinished ones continue from their checkpoint")
  parser.add_argument("--augment", choices=("none", "offline"), default="offline",
                      help="CNN-branch augmentation of the training split: offline is the "
                      "paper's x5 set (default: %(default)s)")
  parser.add_argument("--max-epochs", type=int, default=None,
                      help="epoch cap per trial (default: the paper's 200)")
  add_seed_argument(parser)
  parser.add_argument("--workers", type=int, default=None,
                      help="feature-extraction processes (default: cores, at most 4)")
  add_execution_arguments(parser)
  add_set_argument(parser)
  parser.set_defaults(func=run, hparams=None, searched=True)


def run(args) -> int:
  import jax

  from merjax import parallel
  from merjax.commands._options import check_dataset, config_from_args
  from merjax.config import STAGES
  from merjax.parallel.files import check_writable
  from merjax.tune.run import tune_dataset

  config = config_from_args(args)
  check_dataset(args)  # before Ray starts
  check_writable(args.out, what="--out")
  # On a pod slice the command runs on every host (SLURM, Open MPI, TPU VMs are detected):
  # process 0 drives the Ray search, whose trials Ray places; the other hosts have no part.
  if parallel.initialize_distributed() and not parallel.is_primary():
    print(f"process {jax.process_index()}: the search runs on process 0")
    return 0
  stages = STAGES if args.stage == "all" else (args.stage,)
  tune_dataset(args.dataset, config=config, out=args.out, data_dir=args.data_dir,
               stages=stages, clips_per_quadrant=args.clips_per_quadrant,
               workers=args.workers, resume=args.resume, address=args.address,
               num_cpus=args.num_cpus, cpus_per_trial=args.cpus_per_trial,
               gpus_per_trial=args.gpus_per_trial)
  return 0
