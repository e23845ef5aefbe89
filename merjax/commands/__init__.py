"""One module per CLI sub-command.

Each module defines ``register(subparsers)``, which adds its parser and sets ``func`` to a
``run(args) -> int`` function. Heavy imports happen inside ``run`` so that ``merjax --help``
stays fast. :mod:`merjax.cli` discovers the modules here; nothing else needs editing.
"""
