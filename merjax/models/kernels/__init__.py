"""CPU fast paths of the CNN, kept apart from the Flax modules that select them: convolutions
laid out for XLA:CPU's multi-threaded kernels (:mod:`~merjax.models.kernels.conv`), a
Threefry dropout mask bit-identical to Flax's (:mod:`~merjax.models.kernels.dropout`), and the
fused conv-BatchNorm-dropout-pool block with an analytic backward
(:mod:`~merjax.models.kernels.fused`)."""
