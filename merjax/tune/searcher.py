"""Search algorithms for Ray Tune: Gaussian-process Bayesian optimisation as in Keras Tuner,
random search, and optuna's TPE.

Why a custom Ray Tune ``Searcher`` for the default: the paper uses Keras Tuner's
``BayesianOptimization`` oracle, a Gaussian process (Matern 5/2 kernel, ``alpha=1e-4``,
normalised targets, 20 optimiser restarts; Keras Tuner up to 1.1 fitted it with scikit-learn's
``GaussianProcessRegressor``) with the upper-confidence-bound acquisition
``mean + 2.6 * std`` over hyperparameters mapped to the unit cube. Ray Tune's own GP integration,
``BayesOptSearch``, only handles float parameters, and optuna's ``GPSampler`` needs PyTorch
(a ~1 GB dependency for a 60-point problem). :class:`GPSearcher` reproduces the Keras Tuner
oracle with scikit-learn, already a merjax dependency: the space is small and discrete, so the
acquisition is maximised exactly over all untried points instead of by L-BFGS on a
relaxation. ``--searcher tpe`` uses Ray's ``OptunaSearch`` with optuna's ``TPESampler``, and
``--searcher random`` is :class:`GPSearcher` without the model.

Every searcher starts with the lower end of every range, then draws random start-up points.
As in Keras Tuner, there are by default ``3 x`` (number of hyperparameters) start-up trials, the
first included: 9 of the paper's 10 trials, so only the last one is guided by the model
(``--startup-trials`` changes this). Their number stays below the trial budget so that the
model guides at least one trial.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from merjax.config import TuneConfig
from merjax.errors import MerjaxError
from merjax.tune.space import SearchSpace

try:  # Ray is the optional `tune` extra; the module stays importable without it.
  from ray.tune.search import Searcher as _Searcher
except ImportError:  # pragma: no cover - exercised only without the extra
  _Searcher = object  # type: ignore[misc,assignment]

SEARCHERS: tuple[str, ...] = ("gp", "tpe", "random")


def default_startup_trials(n_hyperparameters: int) -> int:
  """Keras Tuner's ``BayesianOptimization`` default: ``max(3 * n_hyperparameters, 3)``.

  Its oracle fits the Gaussian process only once this many trials completed, the first trial
  (every hyperparameter at its default, here the lower end) included.
  """
  return max(3 * n_hyperparameters, 3)


def requested_startup(config: TuneConfig) -> int:
  """``config.startup_trials``, or Keras Tuner's default for the search space when None."""
  if config.startup_trials is not None:
    return config.startup_trials
  return default_startup_trials(len(SearchSpace.from_config(config).choices()))


def startup_count(config: TuneConfig) -> int:
  """Start-up trials (the lower-end point included): at least one, fewer than ``trials``.

  With the paper's budget of 10 trials and Keras Tuner's default this is 9: the lower-end
  trial, eight random points, then one trial guided by the Gaussian process.
  """
  return max(1, min(requested_startup(config), config.trials - 1))


class GPSearcher(_Searcher):
  """Gaussian-process Bayesian optimisation over the discrete paper space (Keras Tuner's oracle).

  Trial ``k`` (0-based) is ``points_to_evaluate[k]`` while those last (by default the lower end
  of every range), then a random untried point until ``startup_trials`` suggestions were made,
  then the untried point maximising the upper confidence bound of a GP fitted to the completed
  trials. Failed trials are not fitted, and no point is suggested twice.

  Args:
    space: the search space.
    metric: the result key to optimise (a trial's best validation accuracy).
    mode: ``"max"`` or ``"min"``.
    startup_trials: suggestions made before the GP is used (``points_to_evaluate`` included).
    points_to_evaluate: the first points, by default ``[space.lower_end()]``.
    model: ``"gp"``, or ``"random"`` for plain random search.
    beta: the exploration weight of the upper confidence bound (Keras Tuner: 2.6).
    alpha: the noise added to the kernel diagonal (Keras Tuner: 1e-4).
    restarts: restarts of the kernel-hyperparameter optimiser per fit (Keras Tuner: 20).
    seed: seeds the random start-up draws and the GP's optimiser restarts.
  """

  def __init__(self, space: SearchSpace, *, metric: str = "best_val_accuracy", mode: str = "max",
               startup_trials: int = 3, points_to_evaluate: Sequence[dict] | None = None,
               model: str = "gp", beta: float = 2.6, alpha: float = 1e-4, restarts: int = 20,
               seed: int = 0):
    if _Searcher is object:
      raise MerjaxError("hyperparameter search needs Ray Tune: pip install 'merjax[tune]'")
    super().__init__(metric=metric, mode=mode)
    if model not in ("gp", "random"):
      raise MerjaxError(f"GPSearcher model must be 'gp' or 'random', got {model!r}")
    if mode not in ("max", "min"):
      raise MerjaxError(f"mode must be 'max' or 'min', got {mode!r}")
    self.space = space
    self.model = model
    self.startup_trials = int(startup_trials)
    self.beta, self.alpha, self.seed = float(beta), float(alpha), int(seed)
    self.restarts = int(restarts)
    points = [space.lower_end()] if points_to_evaluate is None else list(points_to_evaluate)
    self.points_to_evaluate = [space.validate(p) for p in points]
    self._rng = np.random.default_rng(seed)
    self._suggested: dict[str, dict] = {}   # trial id -> point, in suggestion order
    self._scores: dict[str, float] = {}     # completed trials
    self._failed: set[str] = set()

  # Ray passes the experiment's metric/mode when the searcher was built without them.
  def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                            **spec) -> bool:
    if metric and not self._metric:
      self._metric = metric
    if mode and not self._mode:
      self._mode = mode
    return True

  def _untried(self) -> list[dict]:
    tried = [tuple(p.values()) for p in self._suggested.values()]
    return [p for p in self.space.points() if tuple(p.values()) not in tried]

  def _ucb_choice(self, candidates: list[dict]) -> dict:
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern

    done = list(self._scores)
    x = np.stack([self.space.encode(self._suggested[t]) for t in done])
    y = np.array([self._scores[t] for t in done])
    sign = 1.0 if self._mode == "max" else -1.0
    kernel = ConstantKernel(1.0) * Matern(length_scale=np.ones(x.shape[1]), nu=2.5)
    gp = GaussianProcessRegressor(kernel=kernel, alpha=self.alpha, normalize_y=True,
                                  n_restarts_optimizer=self.restarts,
                                  random_state=self.seed + len(self._suggested))
    with warnings.catch_warnings():
      # A handful of points routinely pushes length scales to their bounds.
      warnings.simplefilter("ignore")
      gp.fit(x, sign * y)
    mean, std = gp.predict(np.stack([self.space.encode(p) for p in candidates]), return_std=True)
    return candidates[int(np.argmax(mean + self.beta * std))]

  # Ray's signature says Optional[Dict], but its own protocol returns the FINISHED string.
  def suggest(self, trial_id: str) -> dict | str | None:  # type: ignore[override]
    """The next point, or ``Searcher.FINISHED`` once every point was suggested."""
    candidates = self._untried()
    if not candidates:
      return _Searcher.FINISHED
    k = len(self._suggested)
    if k < len(self.points_to_evaluate):
      point = self.points_to_evaluate[k]
      if point not in candidates:
        point = candidates[0]
    elif self.model == "random" or k < self.startup_trials or not self._scores:
      point = candidates[int(self._rng.integers(len(candidates)))]
    else:
      point = self._ucb_choice(candidates)
    self._suggested[trial_id] = dict(point)
    return dict(point)

  def on_trial_complete(self, trial_id: str, result: dict | None = None,
                        error: bool = False) -> None:
    if trial_id not in self._suggested:
      return
    score = None if (error or not result) else result.get(self._metric)
    if score is None or not np.isfinite(score):
      self._failed.add(trial_id)
    else:
      self._scores[trial_id] = float(score)

  def add_evaluated_point(self, parameters: dict, value: float, error: bool = False,
                          pruned: bool = False, intermediate_values=None) -> None:
    trial_id = f"evaluated-{len(self._suggested)}"
    self._suggested[trial_id] = self.space.validate(parameters)
    self.on_trial_complete(trial_id, None if error else {self._metric: value}, error=error)

  @property
  def history(self) -> list[tuple[str, dict, float | None]]:
    """``(trial_id, point, score or None)`` in suggestion order."""
    return [(t, p, self._scores.get(t)) for t, p in self._suggested.items()]

  def get_state(self) -> dict:
    return {"suggested": self._suggested, "scores": self._scores, "failed": self._failed,
            "rng": self._rng.bit_generator.state, "metric": self._metric, "mode": self._mode}

  def set_state(self, state: dict) -> None:
    self._suggested, self._scores = dict(state["suggested"]), dict(state["scores"])
    self._failed = set(state["failed"])
    self._rng.bit_generator.state = state["rng"]
    self._metric, self._mode = state["metric"], state["mode"]

  def save(self, checkpoint_path: str) -> None:
    with open(checkpoint_path, "wb") as f:
      pickle.dump(self.get_state(), f)

  def restore(self, checkpoint_path: str) -> None:
    with open(checkpoint_path, "rb") as f:
      self.set_state(pickle.load(f))


def _optuna_tpe(space: SearchSpace, *, metric: str, config: TuneConfig, startup: int,
                points_to_evaluate: list[dict]):
  try:
    import optuna
    from ray.tune.search.optuna import OptunaSearch
  except ImportError as error:
    raise MerjaxError(f"--searcher tpe needs optuna ({error}); pip install 'merjax[tune]'"
                      ) from None
  optuna.logging.set_verbosity(optuna.logging.WARNING)
  categorical = optuna.distributions.CategoricalDistribution
  distributions: dict[str, optuna.distributions.BaseDistribution] = {
      key: categorical(list(values)) for key, values in space.choices().items()}
  sampler = optuna.samplers.TPESampler(n_startup_trials=startup, seed=config.seed)
  return OptunaSearch(space=distributions, metric=metric, mode="max", sampler=sampler,
                      points_to_evaluate=points_to_evaluate)


def make_searcher(config: TuneConfig, *, metric: str = "best_val_accuracy",
                  points_to_evaluate: Sequence[dict] | None = None,
                  log: Callable[[str], Any] | None = None):
  """The configured Ray Tune search algorithm, limited to ``config.max_concurrent`` trials.

  Args:
    config: searcher name, trial budget, start-up trials, space, concurrency and seed.
    metric: the result key to maximise.
    points_to_evaluate: the first points (default: the lower end of every range).
    log: receives a note when the start-up count is lowered to fit the budget.

  Returns:
    A ``ray.tune.search.ConcurrencyLimiter`` around the searcher.
  """
  from ray.tune.search import ConcurrencyLimiter

  if config.searcher not in SEARCHERS:
    raise MerjaxError(f"searcher must be one of {SEARCHERS}, got {config.searcher!r}")
  if config.max_concurrent < 1:
    raise MerjaxError(f"max_concurrent must be at least 1, got {config.max_concurrent}")
  space = SearchSpace.from_config(config)
  startup = startup_count(config)
  if startup != requested_startup(config) and log is not None:
    log(f"{startup} start-up trial(s) instead of {requested_startup(config)}, so that the model "
        f"guides part of the {config.trials}-trial budget")
  points = [space.lower_end()] if points_to_evaluate is None else [
      space.validate(p) for p in points_to_evaluate]
  if config.searcher == "tpe":
    searcher = _optuna_tpe(space, metric=metric, config=config, startup=startup,
                           points_to_evaluate=points)
  else:
    searcher = GPSearcher(space, metric=metric, mode="max", startup_trials=startup,
                          points_to_evaluate=points, model=config.searcher, seed=config.seed)
  return ConcurrencyLimiter(searcher, max_concurrent=config.max_concurrent)
