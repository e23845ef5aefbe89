"""The Essentia backend: a clear error without the extra, and real extraction with it."""

import importlib.util
import re
import sys

import numpy as np
import pytest

from merjax.errors import MerjaxError
from merjax.features import essentia_backend, extract_features, feature_manifest, feature_names

HAS_ESSENTIA = importlib.util.find_spec("essentia") is not None


def test_missing_essentia_gives_the_install_hint(monkeypatch):
  monkeypatch.setitem(sys.modules, "essentia", None)  # makes `import essentia` fail
  monkeypatch.setitem(sys.modules, "essentia.standard", None)
  essentia_backend._extractor.cache_clear()
  essentia_backend._reference.cache_clear()
  try:
    for call in (lambda: feature_names(backend="essentia"),
                 lambda: extract_features(np.zeros((1, 16000), np.float32), backend="essentia")):
      with pytest.raises(MerjaxError, match=re.escape("pip install 'merjax[essentia]'")):
        call()
  finally:
    essentia_backend._extractor.cache_clear()
    essentia_backend._reference.cache_clear()


@pytest.mark.slow
@pytest.mark.skipif(not HAS_ESSENTIA, reason="essentia is not installed (merjax[essentia])")
def test_music_extractor_features():
  from merjax.data.synthetic import clip
  names = feature_names(backend="essentia")
  assert len(names) > 1000 and len(set(names)) == len(names)
  assert [m.name for m in feature_manifest(backend="essentia")] == names
  assert all(re.match(r"^[a-z_]+\.[A-Za-z0-9_]+\.[a-z0-9_]+$", n) for n in names)
  for expected in ("tone_colour.spectral_centroid.mean", "rhythm.bpm.value",
                   "tone_colour.mfcc_00.mean", "harmony.key_edma_scale_major.value",
                   "tone_colour.mfcc.cov_00_00", "dynamics.average_loudness.value"):
    assert expected in names
  y, params = clip(1, 0, seconds=8.0, seed=0)
  X = extract_features(y[None], backend="essentia")
  assert X.shape == (1, len(names)) and np.isfinite(X).mean() > 0.99
  bpm = X[0, names.index("rhythm.bpm.value")]
  assert any(abs(bpm * f / params["tempo"] - 1) < 0.05 for f in (0.5, 1.0, 2.0))
