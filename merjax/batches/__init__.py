"""Per-host batches of a split, fed to the devices: resident (sharded on the devices) or streamed
with grain (:mod:`merjax.batches.split`, :mod:`merjax.batches.loader`), and the CNN's augmented
training batches (:mod:`merjax.batches.augmented`)."""
