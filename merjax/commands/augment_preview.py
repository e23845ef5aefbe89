"""``merjax augment-preview``: hear and see the four augmentations of one audio file."""

from __future__ import annotations

import os

SAMPLE_RATE = 16000
MAX_SECONDS = 30.0
TITLES = {"time_shift": "time shift {:+.2f} s", "pitch_shift": "pitch shift {:+.2f} semitones",
          "time_stretch": "time stretch rate {:.3f}", "power_shift": "power shift {:+.2f} dB"}


def register(subparsers) -> None:
  parser = subparsers.add_parser(
      "augment-preview", help="write the four augmented versions of an audio file and their "
      "log-mels",
      description="Decode FILE (mono, 16 kHz, at most the first 30 s), apply the paper's four "
      "augmentations (time shift, pitch shift, time stretch, power shift) with parameters drawn "
      "from the paper's ranges, and write one WAV per augmentation plus a PNG with the five "
      "log-mel spectrograms (original and augmented) side by side.")
  parser.add_argument("file", metavar="FILE", help="audio file to augment (any format librosa "
                      "can decode)")
  parser.add_argument("--out", required=True, metavar="DIR",
                      help="output directory (created if missing)")
  parser.add_argument("--seed", type=int, default=0,
                      help="seed of the drawn parameters (default: %(default)s)")
  parser.set_defaults(func=run)


def load_clip(path: str):
  """The first 30 s of ``path`` as float32 mono at 16 kHz, or a MerjaxError saying why not."""
  from merjax.audio.io import decode

  waveform, _ = decode(path, sample_rate=SAMPLE_RATE)
  return waveform[:int(MAX_SECONDS * SAMPLE_RATE)]


def write_preview(path: str, out_dir: str, *, seed: int = 0) -> list[str]:
  """Writes ``<stem>_<transform>.wav`` for each augmentation and ``<stem>_log_mels.png``.

  Args:
    path: audio file.
    out_dir: directory for the outputs (created if missing).
    seed: seed of the drawn parameters.

  Returns:
    The paths written.

  Raises:
    MerjaxError: if the file is missing or undecodable, or ``out_dir`` is an existing file.
  """
  import jax
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  import numpy as np
  import soundfile

  from merjax.audio import TRANSFORMS, augment_variants, log_mel
  from merjax.errors import MerjaxError

  if os.path.exists(out_dir) and not os.path.isdir(out_dir):
    raise MerjaxError(f"--out {out_dir} is an existing file, not a directory")
  waveform = load_clip(path)
  variants, parameters = augment_variants(jax.random.key(seed), waveform[None],
                                          sample_rate=SAMPLE_RATE)
  os.makedirs(out_dir, exist_ok=True)
  stem = os.path.splitext(os.path.basename(path))[0]
  written = []
  for name in TRANSFORMS:
    target = os.path.join(out_dir, f"{stem}_{name}.wav")
    # Float samples: a +10 dB power shift may exceed full scale.
    soundfile.write(target, np.asarray(variants[name])[0], SAMPLE_RATE, subtype="FLOAT")
    written.append(target)

  all_mels = np.asarray(log_mel(np.stack([waveform] + [variants[n][0] for n in TRANSFORMS]),
                                sample_rate=SAMPLE_RATE))
  panels = [("original", "original")] + [(name, TITLES[name].format(
      float(np.asarray(parameters[name])[0]))) for name in TRANSFORMS]
  mels = {name: mel for (name, _), mel in zip(panels, all_mels)}
  low = min(m.min() for m in mels.values())
  high = max(m.max() for m in mels.values())
  figure, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.8), sharey=True,
                             layout="constrained")
  seconds = waveform.size / SAMPLE_RATE
  for axis, (name, title) in zip(axes, panels):
    image = axis.imshow(mels[name], origin="lower", aspect="auto", cmap="magma", vmin=low,
                        vmax=high, extent=(0, seconds, 0, mels[name].shape[0]))
    axis.set_title(title)
    axis.set_xlabel("time (s)")
  axes[0].set_ylabel("mel band")
  figure.colorbar(image, ax=axes, label="dB (ref 1.0)", fraction=0.015)
  figure.suptitle(f"{os.path.basename(path)}: augmentations (seed {seed})")
  target = os.path.join(out_dir, f"{stem}_log_mels.png")
  figure.savefig(target, dpi=100)
  plt.close(figure)
  written.append(target)
  return written


def run(args) -> int:
  for written in write_preview(args.file, args.out, seed=args.seed):
    print(written)
  return 0
