"""The paper's CNN in Keras 3 on TensorFlow: the reference that ``benchmarks/train.py`` times.

The authors' group trained this network with Keras; it is rebuilt here layer for layer
(docs/method.md) to time a training step on the same machine as ours. Imported only when
``keras`` and ``tensorflow`` are installed (the optional ``bench`` extra).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

POOLS = ((2, 2), (2, 2), (3, 2), (3, 2))  # (time, mel)


def available() -> bool:
  """Whether Keras 3 with the TensorFlow backend can be imported."""
  try:
    import keras  # noqa: F401
    import tensorflow  # noqa: F401
  except ImportError:
    return False
  return True


def versions() -> str:
  import keras
  import tensorflow as tf
  return f"Keras {keras.__version__} + TensorFlow {tf.__version__}"


def build_model(*, frames: int = 938, n_mels: int = 128, n_classes: int = 4,
                learning_rate: float = 1e-2, jit_compile: bool | str = "auto"):
  """The CNN stage as Keras layers, compiled with SGD and sparse cross-entropy on logits.

  Conv2D(32, 3x3, valid, he_normal) -> BatchNormalization -> Dropout(0.1) ->
  MaxPooling2D -> ReLU for the pools (2,2), (2,2), (3,2), (3,2) over (time, mel), the last
  block without Dropout; Flatten -> Dropout(0.4) -> Dense(300, relu) -> Dense(n_classes).

  Args:
    frames, n_mels: input size; the input is [shape=(batch, frames, n_mels, 1)].
    n_classes: output logits.
    learning_rate: SGD learning rate (the paper's best CNN setting is SGD at 1e-2).
    jit_compile: passed to ``Model.compile`` (Keras' default is ``"auto"``).

  Returns:
    A compiled ``keras.Model``.
  """
  os.environ.setdefault("KERAS_BACKEND", "tensorflow")
  import keras
  from keras import layers

  inputs = keras.Input((frames, n_mels, 1))
  x = inputs
  for i, pool in enumerate(POOLS):
    x = layers.Conv2D(32, (3, 3), padding="valid", kernel_initializer="he_normal")(x)
    x = layers.BatchNormalization()(x)
    if i < len(POOLS) - 1:
      x = layers.Dropout(0.1)(x)
    x = layers.MaxPooling2D(pool)(x)
    x = layers.Activation("relu")(x)
  x = layers.Flatten()(x)
  x = layers.Dropout(0.4)(x)
  x = layers.Dense(300, activation="relu")(x)
  outputs = layers.Dense(n_classes)(x)
  model = keras.Model(inputs, outputs)
  model.compile(optimizer=keras.optimizers.SGD(learning_rate),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=jit_compile)
  return model


def build_fusion_model(*, width: int = 400, n_classes: int = 4, learning_rate: float = 1e-3,
                       jit_compile: bool | str = "auto"):
  """The fusion classifier (Dense 200 -> 100 -> n_classes, ReLU, Dropout 0.3), Adam."""
  os.environ.setdefault("KERAS_BACKEND", "tensorflow")
  import keras
  from keras import layers

  inputs = keras.Input((width,))
  x = inputs
  for units in (200, 100):
    x = layers.Dense(units, activation="relu")(x)
    x = layers.Dropout(0.3)(x)
  model = keras.Model(inputs, layers.Dense(n_classes)(x))
  model.compile(optimizer=keras.optimizers.Adam(learning_rate, epsilon=1e-7),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                jit_compile=jit_compile)
  return model


def _batch(shape: tuple[int, ...], seed: int):
  import numpy as np
  import tensorflow as tf
  rng = np.random.default_rng(seed)
  x = tf.constant(rng.normal(size=shape).astype(np.float32))
  y = tf.constant((np.arange(shape[0]) % 4).astype(np.int32))
  return x, y


def training_data(*, batch: int = 32, frames: int = 938, n_mels: int = 128, seed: int = 0,
                  jit_compile: bool | str = "auto"):
  """``(model, x, y)``: the compiled CNN (trained one step) and one resident batch."""
  import keras
  keras.utils.set_random_seed(seed)
  model = build_model(frames=frames, n_mels=n_mels, jit_compile=jit_compile)
  x, y = _batch((batch, frames, n_mels, 1), seed)
  model.train_on_batch(x, y)  # builds and compiles the train function
  return model, x, y


def fusion_training_data(*, batch: int = 32, width: int = 400, seed: int = 0):
  """``(model, x, y)`` for the fusion classifier, as :func:`training_data`."""
  import keras
  keras.utils.set_random_seed(seed)
  model = build_fusion_model(width=width)
  x, y = _batch((batch, width), seed)
  model.train_on_batch(x, y)
  return model, x, y


def timed_steps(model, x, y, *, steps: int) -> float:
  """Samples per second of ``steps`` calls of ``model.train_on_batch(x, y)``."""
  start = time.perf_counter()
  for _ in range(steps):
    model.train_on_batch(x, y)
  return steps * int(x.shape[0]) / (time.perf_counter() - start)


def train_samples_per_second(*, batch: int = 32, frames: int = 938, n_mels: int = 128,
                             steps: int = 3, repeats: int = 3, seed: int = 0,
                             jit_compile: bool | str = "auto") -> list[float]:
  """Samples per second of the CNN's ``train_on_batch`` on one resident random batch.

  Args:
    batch: batch size.
    frames, n_mels: input size.
    steps: training steps per timed repeat.
    repeats: timed repeats (after one warm-up step).
    seed: seed of the data and the initial weights.
    jit_compile: passed to ``Model.compile``.

  Returns:
    One throughput per repeat.
  """
  model, x, y = training_data(batch=batch, frames=frames, n_mels=n_mels, seed=seed,
                              jit_compile=jit_compile)
  return [timed_steps(model, x, y, steps=steps) for _ in range(repeats)]


def _main(argv: Sequence[str] | None = None) -> None:
  import argparse
  p = argparse.ArgumentParser(description="time the Keras reference CNN's training step")
  p.add_argument("--batch", type=int, default=32, help="batch size")
  p.add_argument("--steps", type=int, default=3, help="steps per timed repeat")
  p.add_argument("--repeats", type=int, default=3, help="timed repeats")
  p.add_argument("--jit-compile", choices=("auto", "true", "false"), default="auto",
                 help="Model.compile(jit_compile=...)")
  args = p.parse_args(argv)
  jit = {"auto": "auto", "true": True, "false": False}[args.jit_compile]
  rates = train_samples_per_second(batch=args.batch, steps=args.steps, repeats=args.repeats,
                                   jit_compile=jit)
  print(versions(), "samples/s:", ", ".join(f"{r:.1f}" for r in rates))


if __name__ == "__main__":
  _main()
