"""The paper's stopping rules as a Ray Tune ``Stopper``, on the same :class:`EarlyStopping`
that :func:`merjax.train.fit` uses.

Each trial reports once per epoch (``epoch`` counts from 1, with ``train_accuracy`` and
``val_accuracy``). The stopper feeds those to one :class:`EarlyStopping` per trial: a trial
stops when validation accuracy has not improved for ``patience`` epochs, when training
accuracy exceeds 0.90, or at the epoch cap. A trial restored from its checkpoint after an
interruption re-reports epochs the stopper has seen, or skips some it has not; the stopper
then takes the trial's own stopping state (``early_stopping`` in the result, as the trial
restored it) and goes on from there.
"""

from __future__ import annotations

from merjax.config import TrainConfig
from merjax.train.stopping import EarlyStopping

try:
  from ray.tune.stopper import Stopper as _Stopper
except ImportError:  # pragma: no cover - exercised only without the `tune` extra
  _Stopper = object  # type: ignore[misc,assignment]


class PaperStopper(_Stopper):
  """Stops each trial by the paper's rules; never stops the whole search.

  Args:
    patience: epochs without a strict validation improvement before stopping.
    max_epochs: the epoch cap.
    train_accuracy_stop: stop once training accuracy exceeds this (``None``: never).
  """

  def __init__(self, *, patience: int = 15, max_epochs: int = 200,
               train_accuracy_stop: float | None = 0.90):
    self.patience, self.max_epochs = int(patience), int(max_epochs)
    self.train_accuracy_stop = train_accuracy_stop
    self._trials: dict[str, EarlyStopping] = {}

  @classmethod
  def from_config(cls, config: TrainConfig) -> PaperStopper:
    return cls(patience=config.patience, max_epochs=config.max_epochs,
               train_accuracy_stop=config.train_accuracy_stop)

  def _fresh(self) -> EarlyStopping:
    return EarlyStopping(patience=self.patience, max_epochs=self.max_epochs,
                         train_accuracy_stop=self.train_accuracy_stop)

  def __call__(self, trial_id: str, result: dict) -> bool:
    """Records one reported epoch; True when the trial must stop."""
    if "epoch" not in result:
      return False
    epoch = int(result["epoch"])
    rules = self._trials.get(trial_id)
    if rules is None and epoch == 1:
      rules = self._trials[trial_id] = self._fresh()
    if rules is not None and rules.stop_reason is None and epoch == rules.epochs_seen + 1:
      rules.update(train_accuracy=float(result["train_accuracy"]),
                   val_accuracy=float(result["val_accuracy"]))
    elif "early_stopping" in result:
      # A repeated final result, or a trial resumed from its checkpoint: take its state.
      rules = self._trials[trial_id] = EarlyStopping.from_state_dict(result["early_stopping"])
    if rules is None:
      return False
    return rules.stop_reason is not None

  def stop_reason(self, trial_id: str) -> str | None:
    """Why the trial stopped (``None`` while it runs or when it is unknown)."""
    rules = self._trials.get(trial_id)
    return None if rules is None else rules.stop_reason

  def stop_all(self) -> bool:
    return False
