"""The paper's search space: optimizer, learning rate and batch size, all discrete.

Louro et al. (2024) tune each stage over optimizer {SGD, Adam}, learning rate {1e-6 .. 1e-1}
(powers of ten) and batch size {16 .. 256} (powers of two), starting "at the lower end of the
specified intervals". Points are plain dicts (``{"optimizer": "sgd", "learning_rate": 1e-6,
"batch_size": 16}``), so they travel through Ray Tune unchanged.
"""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np

from merjax.config import TrainConfig, TuneConfig
from merjax.errors import MerjaxError

KEYS: tuple[str, ...] = ("optimizer", "learning_rate", "batch_size")


@dataclasses.dataclass(frozen=True)
class SearchSpace:
  """Choices per hyperparameter; numeric choices are kept in ascending order.

  Attributes:
    optimizers: the optimizer names, in the order given (the first is the "lower end").
    learning_rates: ascending learning rates.
    batch_sizes: ascending batch sizes.
  """

  optimizers: tuple[str, ...]
  learning_rates: tuple[float, ...]
  batch_sizes: tuple[int, ...]

  def __post_init__(self):
    for key, values in self.choices().items():
      if not values:
        raise MerjaxError(f"the search space has no {key} to choose from")
      if len(set(values)) != len(values):
        raise MerjaxError(f"the search space repeats a {key}: {list(values)}")
    object.__setattr__(self, "learning_rates", tuple(sorted(map(float, self.learning_rates))))
    object.__setattr__(self, "batch_sizes", tuple(sorted(map(int, self.batch_sizes))))

  @classmethod
  def from_config(cls, config: TuneConfig) -> SearchSpace:
    return cls(optimizers=tuple(config.optimizers), learning_rates=tuple(config.learning_rates),
               batch_sizes=tuple(config.batch_sizes))

  def choices(self) -> dict[str, tuple]:
    return {"optimizer": self.optimizers, "learning_rate": self.learning_rates,
            "batch_size": self.batch_sizes}

  @property
  def size(self) -> int:
    return len(self.optimizers) * len(self.learning_rates) * len(self.batch_sizes)

  def lower_end(self) -> dict:
    """The first trial of the paper: the first optimizer, the smallest rate and batch."""
    return {key: values[0] for key, values in self.choices().items()}

  def points(self) -> list[dict]:
    """Every point of the space, in a fixed order."""
    return [dict(zip(KEYS, values)) for values in itertools.product(*self.choices().values())]

  def encode(self, point: dict) -> np.ndarray:
    """Maps a point into the unit cube [shape=(3,)].

    Each choice ``i`` of ``n`` goes to ``(i + 0.5) / n``, Keras Tuner's ``value_to_prob`` for
    a ``Choice``: ordered choices (rates, batch sizes) keep their order, and the two
    optimizers land at 0.25 and 0.75.
    """
    return np.array([(values.index(point[key]) + 0.5) / len(values)
                     for key, values in self.choices().items()])

  def validate(self, point: dict) -> dict:
    """Returns ``point`` restricted to :data:`KEYS`, or raises if it lies outside the space."""
    missing = [key for key in KEYS if key not in point]
    if missing:
      raise MerjaxError(f"search point {point} lacks {missing}")
    for key, values in self.choices().items():
      if point[key] not in values:
        raise MerjaxError(f"search point {point}: {key} {point[key]!r} is not one of "
                          f"{list(values)}")
    return {key: point[key] for key in KEYS}


def apply_point(config: TrainConfig, point: dict) -> TrainConfig:
  """The stage's training settings with a point's optimizer, learning rate and batch size."""
  return config.replace(optimizer=str(point["optimizer"]),
                        learning_rate=float(point["learning_rate"]),
                        batch_size=int(point["batch_size"]))
