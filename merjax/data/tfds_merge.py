"""TFDS builder for MERGE: one config per audio-bearing subset and TVT split variant.

Usable on its own, like any TFDS dataset with a manual download::

  import tensorflow_datasets as tfds
  from merjax.data.tfds_merge import Merge

  builder = Merge(config="audio_balanced_70_15_15", data_dir="~/merjax_data")
  builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
      manual_dir="~/Downloads"))          # holds MERGE_Audio_Balanced.zip (or the folder)
  train = builder.as_data_source(split="train")   # no TensorFlow needed
  train[0]["waveform"], train[0]["quadrant"]

The record layout is described in :mod:`merjax.data._builder`; ``merjax prepare merge`` runs the
same builder with parallel decoding and a summary.
"""

from __future__ import annotations

import dataclasses

import tensorflow_datasets as tfds

from merjax.data._builder import ClipsBuilder
from merjax.data._index import SongTable
from merjax.data.merge import SPLIT_VARIANTS, SUBSETS, folder_name, read_merge


@dataclasses.dataclass(eq=False)
class MergeConfig(tfds.core.BuilderConfig):
  """One MERGE subset with one of its TVT splits."""

  subset: str = "audio_balanced"
  split: str = "70_15_15"


def config_name(subset: str, split: str) -> str:
  return f"{subset}_{split}"


class Merge(ClipsBuilder):
  """MERGE (Louro et al. 2024), audio of the Audio and Bimodal subsets, 16 kHz int16 clips."""

  BUILDER_CONFIGS = [
      MergeConfig(name=config_name(subset, split), subset=subset, split=split,
                  description=f"{folder_name(subset)} with its tvt_{split} split")
      for subset in SUBSETS for split in SPLIT_VARIANTS
  ]
  DEFAULT_BUILDER_CONFIG_NAME = config_name("audio_balanced", "70_15_15")
  MANUAL_DOWNLOAD_INSTRUCTIONS = """
  Download the subset's zip from Zenodo (record 13939205, MERGE v1.1.0), e.g.
  MERGE_Audio_Balanced.zip, and pass as the manual directory the folder holding it, the zip
  itself, or the unzipped MERGE_Audio_Balanced/ folder. Audio Complete/Balanced and Bimodal
  Complete/Balanced carry audio; the Lyrics subsets do not.
  """

  def _dataset_name(self) -> str:
    return f"MERGE {folder_name(self.builder_config.subset)[6:].replace('_', ' ')}"

  def _extra_params(self) -> dict:
    return {"subset": self.builder_config.subset, "split": self.builder_config.split}

  def _read_songs(self, manual_dir: str) -> SongTable:
    return read_merge(manual_dir, subset=self.builder_config.subset,
                      split=self.builder_config.split)
