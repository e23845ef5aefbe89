"""Audio front end: decoding, log-mel spectrograms and the paper's augmentations, in JAX.

Names are loaded lazily (PEP 562) so that ``merjax.audio.io`` (decoding, used by worker
processes) does not import JAX.
"""

import importlib

_EXPORTS = {
    "AUDIO_EXTENSIONS": "io",
    "DecodedClip": "io",
    "PARAMETER_UNITS": "augment",
    "StretchPlan": "augment",
    "TRANSFORMS": "augment",
    "apply_transform": "augment",
    "augment_log_mel": "augment",
    "augment_variants": "augment",
    "decode": "io",
    "draw_parameters": "augment",
    "fix_length": "io",
    "frame_signal": "spectral",
    "from_pcm16": "io",
    "hann_window": "spectral",
    "load_audio": "io",
    "log_mel": "spectral",
    "mel_filterbank": "spectral",
    "mel_frames": "spectral",
    "mel_spectrogram": "spectral",
    "pitch_shift": "augment",
    "power_shift": "augment",
    "power_to_db": "spectral",
    "random_augment": "augment",
    "stft": "spectral",
    "stretch_plan": "augment",
    "time_shift": "augment",
    "time_stretch": "augment",
    "to_pcm16": "io",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
  if name in _EXPORTS:
    value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    globals()[name] = value
    return value
  raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
  return __all__
