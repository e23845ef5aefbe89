"""Hyperparameter search per stage on Ray Tune, with the paper's protocol (Section 3.4).

Needs the ``tune`` extra (``pip install 'merjax[tune]'``: Ray Tune, optuna).
"""

from merjax.tune.run import TuneOutcome as TuneOutcome
from merjax.tune.run import tune_dataset as tune_dataset
from merjax.tune.run import tune_stages as tune_stages
from merjax.tune.search import StageSearch as StageSearch
from merjax.tune.search import TrialRecord as TrialRecord
from merjax.tune.search import choose_best as choose_best
from merjax.tune.search import tune_stage as tune_stage
from merjax.tune.searcher import GPSearcher as GPSearcher
from merjax.tune.searcher import make_searcher as make_searcher
from merjax.tune.session import ray_session as ray_session
from merjax.tune.space import SearchSpace as SearchSpace
from merjax.tune.stopper import PaperStopper as PaperStopper
