"""Handcrafted features for the DNN branch: extraction, table import and preprocessing.

Backends (:data:`BACKENDS`): ``builtin`` (librosa + numpy, organised by the eight musical
dimensions of Panda et al.), ``essentia`` (``MusicExtractor``, optional extra
``merjax[essentia]``) and ``table`` (a CSV of precomputed features such as the authors' 4QAED
``all_features.csv``). :class:`FeaturePreprocessor` is fitted on the training split only and
saved with the model. :func:`dataset_features` extracts a whole dataset by name into a
resumable per-song cache (what ``merjax features`` runs).
"""

from merjax.features.backends import BACKENDS, backend_config, backend_key, feature_names
from merjax.features.datasets import dataset_features
from merjax.features.extract import cache_directory, extract_cached, extract_features
from merjax.features.featureset import FeatureSet
from merjax.features.manifest import FeatureInfo, feature_manifest, write_manifest
from merjax.features.preprocess import FeaturePreprocessor
from merjax.features.table import read_feature_table, table_features

__all__ = [
    "BACKENDS",
    "FeatureInfo",
    "FeaturePreprocessor",
    "FeatureSet",
    "backend_config",
    "backend_key",
    "cache_directory",
    "dataset_features",
    "extract_cached",
    "extract_features",
    "feature_manifest",
    "feature_names",
    "read_feature_table",
    "table_features",
    "write_manifest",
]
