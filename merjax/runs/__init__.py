"""The jobs the CLI starts: train and evaluate on a dataset (:mod:`merjax.runs.dataset`) and the
demo on the embedded synthetic data (:mod:`merjax.runs.demo`)."""
