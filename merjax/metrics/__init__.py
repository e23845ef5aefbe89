"""Scores as the paper reports them (:mod:`merjax.metrics.classification`)."""
