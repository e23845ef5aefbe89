"""Inference: the trained model artefact, its directory on disk, and song-level prediction.

Modules (import from them directly; this package imports nothing, so that the decoding
workers, which only need ``songs``, do not load JAX):

* ``artefact``: :class:`~merjax.inference.artefact.HybridModel` and the one jitted
  :func:`~merjax.inference.artefact.forward` pass;
* ``directory``: :func:`~merjax.inference.directory.save_model` (atomic) and
  :func:`~merjax.inference.directory.load_model`;
* ``songs``: which windows of a song the model sees, and decoding only those;
* ``predict``: the streamed, parallel, resumable prediction of a music library.
"""
