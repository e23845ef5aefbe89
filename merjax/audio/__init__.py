"""Audio front end: log-mel spectrograms and the paper's augmentations, in JAX."""

from merjax.audio.augment import PARAMETER_UNITS
from merjax.audio.augment import TRANSFORMS
from merjax.audio.augment import StretchPlan
from merjax.audio.augment import apply_transform
from merjax.audio.augment import augment_log_mel
from merjax.audio.augment import augment_variants
from merjax.audio.augment import draw_parameters
from merjax.audio.augment import pitch_shift
from merjax.audio.augment import power_shift
from merjax.audio.augment import random_augment
from merjax.audio.augment import stretch_plan
from merjax.audio.augment import time_shift
from merjax.audio.augment import time_stretch
from merjax.audio.spectral import frame_signal
from merjax.audio.spectral import hann_window
from merjax.audio.spectral import log_mel
from merjax.audio.spectral import map_clips
from merjax.audio.spectral import mel_filterbank
from merjax.audio.spectral import mel_frames
from merjax.audio.spectral import mel_spectrogram
from merjax.audio.spectral import power_to_db
from merjax.audio.spectral import stft

__all__ = [
    "PARAMETER_UNITS",
    "TRANSFORMS",
    "StretchPlan",
    "apply_transform",
    "augment_log_mel",
    "augment_variants",
    "draw_parameters",
    "frame_signal",
    "hann_window",
    "log_mel",
    "map_clips",
    "mel_filterbank",
    "mel_frames",
    "mel_spectrogram",
    "pitch_shift",
    "power_shift",
    "power_to_db",
    "random_augment",
    "stft",
    "stretch_plan",
    "time_shift",
    "time_stretch",
]
