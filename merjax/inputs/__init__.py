"""Model inputs: from a dataset name to normalised log-mels, handcrafted features and labels per
split (:mod:`merjax.inputs.prepare`), with the batched log-mel front end
(:mod:`merjax.inputs.log_mel`)."""
