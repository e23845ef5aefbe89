"""Inference: the trained model artefact, its directory on disk, and song-level prediction.

``artefact``: :class:`HybridModel` and the one jitted :func:`forward` pass;
``directory``: :func:`save_model` / :func:`load_model`;
``songs``: which windows of a song are decoded, and decoding only those;
``predict``: the streamed, parallel, resumable prediction of a music library.
"""

from merjax.inference.artefact import HybridModel as HybridModel
from merjax.inference.artefact import forward as forward
from merjax.inference.directory import load_model as load_model
from merjax.inference.directory import save_model as save_model
