"""The paper's stopping rules, shared by :func:`merjax.train.fit` and the tuner's stopper."""

from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass
class EarlyStopping:
  """Keras Tuner protocol of Louro et al. (2024), Section 3.4.

  Stops when validation accuracy has not improved for ``patience`` epochs in a row, when
  training accuracy exceeds ``train_accuracy_stop``, or after ``max_epochs``. The best epoch
  is the first one reaching the highest validation accuracy (Keras' ``EarlyStopping`` counts
  only strict improvements).

  Attributes are plain numbers so the state can be checkpointed and restored exactly.
  """

  patience: int = 15
  max_epochs: int = 200
  train_accuracy_stop: float | None = 0.90
  best_accuracy: float = -math.inf
  best_epoch: int = -1
  epochs_seen: int = 0
  wait: int = 0
  stop_reason: str | None = None
  improved: bool = False

  def update(self, *, train_accuracy: float, val_accuracy: float) -> bool:
    """Records one finished epoch; returns True when training should stop.

    After the call, ``improved`` tells whether this epoch is the new best.
    """
    if self.stop_reason is not None:
      raise RuntimeError("update() called after the stopper already fired")
    epoch = self.epochs_seen
    self.epochs_seen += 1
    self.improved = val_accuracy > self.best_accuracy
    if self.improved:
      self.best_accuracy, self.best_epoch, self.wait = val_accuracy, epoch, 0
    else:
      self.wait += 1
    if self.train_accuracy_stop is not None and train_accuracy > self.train_accuracy_stop:
      self.stop_reason = f"train accuracy {train_accuracy:.3f} > {self.train_accuracy_stop}"
    elif self.wait >= self.patience:
      self.stop_reason = f"no validation improvement for {self.patience} epochs"
    elif self.epochs_seen >= self.max_epochs:
      self.stop_reason = f"reached {self.max_epochs} epochs"
    return self.stop_reason is not None

  def state_dict(self) -> dict:
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

  @classmethod
  def from_state_dict(cls, state: dict) -> EarlyStopping:
    return cls(**state)
