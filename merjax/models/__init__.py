"""Flax Linen models of the hybrid method."""

from merjax.models.cnn import CNN as CNN
from merjax.models.cnn import CNNBody as CNNBody
from merjax.models.cnn import flattened_size as flattened_size
from merjax.models.dnn import DNN as DNN
from merjax.models.dnn import DNNBody as DNNBody
from merjax.models.hybrid import Fusion as Fusion
from merjax.models.hybrid import Hybrid as Hybrid
from merjax.models.layers import max_pool as max_pool
