"""merjax: hybrid music emotion recognition (Louro et al., LAMIR 2024) in JAX/Flax.

Subpackages: :mod:`merjax.audio` (decoding, log-mels, augmentations), :mod:`merjax.features`
(handcrafted features), :mod:`merjax.data` (datasets, stores, pipelines), :mod:`merjax.models`
(CNN, DNN, fusion), :mod:`merjax.train` (the three stages), :mod:`merjax.tune` (Bayesian
search), :mod:`merjax.metrics.classification` (paper metrics). Importing ``merjax`` itself
loads nothing heavy.
"""

__version__ = "0.1.0"
