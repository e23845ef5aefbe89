"""Training: state, jitted steps, the fit loop and the paper's three stages."""

from merjax.train.fit import FitResult as FitResult
from merjax.train.fit import TrainingDivergedError as TrainingDivergedError
from merjax.train.fit import evaluate_batches as evaluate_batches
from merjax.train.fit import fit as fit
from merjax.train.stages import StageData as StageData
from merjax.train.stages import train_classifier as train_classifier
from merjax.train.stages import train_hybrid as train_hybrid
from merjax.train.state import TrainState as TrainState
from merjax.train.state import create_state as create_state
from merjax.train.state import make_optimizer as make_optimizer
from merjax.train.steps import eval_step as eval_step
from merjax.train.steps import train_step as train_step
from merjax.train.stopping import EarlyStopping as EarlyStopping
