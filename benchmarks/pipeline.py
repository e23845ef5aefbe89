"""Input pipeline throughput: decoding + resampling, and batches from a prepared store.

Cases:
  decode_resample     clips/s turning 30 s 44.1 kHz stereo MP3/WAV files into 16 kHz mono clips:
                      ``merjax.audio.io.load_audio`` (one process) and ``merjax prepare``'s
                      parallel decoding (all cores, with hashing, caching and the worker
                      processes' start-up), against ``librosa.load(path, sr=16000)``.
  batches_from_store  batches/s of 32 shuffled 30 s clips as float32 from a prepared store
                      (grain Loader; device-resident DeviceBatches), against a naive per-example
                      Python loop that decodes every MP3 with librosa.load and stacks the batch.
                      The store's sources cycle through the generated MP3 files.

Run: ``python benchmarks/pipeline.py [--json] [--clips N]``.
"""

from __future__ import annotations

import itertools
import os
import sys
import tempfile
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from _common import emit, parser, row, time_call  # noqa: E402


def _write_clips(folder: str, *, n: int, ext: str, seconds: float, rate: int, channels: int):
  import soundfile as sf

  rng = np.random.default_rng(0)
  t = np.arange(int(seconds * rate)) / rate
  paths = []
  for i in range(n):
    quadrant = f"Q{i % 4 + 1}"
    os.makedirs(os.path.join(folder, quadrant), exist_ok=True)
    freqs = 110.0 * 2 ** (rng.integers(0, 36, size=(channels, 3)) / 12)
    y = np.sin(2 * np.pi * freqs[:, :, None] * t).sum(axis=1) / 4
    y = (y + 0.02 * rng.standard_normal(y.shape)).T.astype(np.float32)
    path = os.path.join(folder, quadrant, f"clip{i:03d}{ext}")
    sf.write(path, y, rate, format=ext[1:].upper())
    paths.append(path)
  return paths


def _librosa_load(path):
  import librosa
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    return librosa.load(path, sr=16000)[0]


def bench_decode(tmp: str, *, mp3: list[str], wav: list[str], repeats: int) -> list[dict]:
  from merjax.audio.io import load_audio
  from merjax.data._index import Song
  from merjax.data._tree import AudioRef
  from merjax.data.prepare import decode_songs

  rows = []
  for fmt, paths in (("mp3", mp3), ("wav", wav)):
    clips = len(paths)
    reference = time_call(lambda paths=paths: [_librosa_load(p) for p in paths], repeats=repeats)
    ours = time_call(lambda paths=paths: [load_audio(p) for p in paths], repeats=repeats)
    common = dict(unit="clips/s", reference=clips / reference,
                  reference_name="librosa.load(sr=16000), 1 process", higher_is_better=True,
                  format=fmt, input="30 s 44.1 kHz stereo")
    rows.append(row("decode_resample", mode="load_audio, 1 process", ours=clips / ours, **common))
    songs = [Song(f"s{i}", i % 4, "train", AudioRef(p)) for i, p in enumerate(paths)]
    workers = os.cpu_count() or 1
    counter = itertools.count()

    # A fresh cache each time, so every clip is really decoded.
    def parallel(songs=songs, counter=counter, workers=workers):
      decode_songs(songs, directory=os.path.join(tmp, f"cache{next(counter)}"), workers=workers,
                   progress=False)

    prepared = time_call(parallel, repeats=max(1, repeats - 1), warmup=0)
    rows.append(row("decode_resample", mode=f"merjax prepare, {workers} processes incl. start-up",
                    ours=clips / prepared, **common))
  return rows


def bench_batches(tmp: str, *, mp3: list[str], clips: int, batch_size: int, epochs: int,
                  repeats: int) -> list[dict]:
  from merjax import parallel
  from merjax.audio.io import fix_length
  from merjax.batches.loader import Loader, pcm_to_float
  from merjax.batches.split import DeviceBatches
  from merjax.data.prepare import prepare
  from merjax.data.store import open_prepared

  # A store of `clips` 30 s clips; the sources cycle through the generated MP3 files.
  source = os.path.join(tmp, "store_src")
  files = {}
  for i in range(clips):
    path = os.path.join(source, f"Q{i % 4 + 1}", f"clip{i:03d}.mp3")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    os.link(mp3[i % len(mp3)], path)
    files[f"Q{i % 4 + 1}/clip{i:03d}"] = path
  data_dir = os.path.join(tmp, "data")
  prepare("folder:bench", manual_dir=source, data_dir=data_dir, progress=False)
  ds = open_prepared("folder:bench", data_dir)
  per_epoch = len(ds) // batch_size

  def naive():  # the loop a first script would write: decode every file, every epoch
    order = np.random.default_rng(0).permutation(len(ds))
    for b in range(per_epoch):
      ids = order[b * batch_size:(b + 1) * batch_size]
      np.stack([fix_length(_librosa_load(files[ds.song_ids[i]]), size=ds.clip_samples)
                for i in ids]).astype(np.float32)

  common = dict(unit="batches/s", reference=per_epoch / time_call(naive, repeats=1, warmup=0),
                higher_is_better=True, batch=batch_size, clips=len(ds),
                reference_name="naive per-example loop: librosa.load each MP3 + np.stack")
  rows = []
  for workers in (0, 2):
    loader = Loader(ds, batch_size=batch_size, seed=0, drop_remainder=True,
                    transform=pcm_to_float, worker_count=workers)
    epoch = itertools.count()

    # Many batches per timing, so prefetch buffers do not flatter the rate.
    def some_epochs(loader=loader, epoch=epoch):
      for _ in range(epochs):
        for batch in loader.epoch(next(epoch)):
          assert batch["waveform"].dtype == np.float32

    seconds = time_call(some_epochs, repeats=repeats)
    loader.close()
    rows.append(row("batches_from_store", mode=f"grain Loader, {workers} worker processes",
                    ours=epochs * per_epoch / seconds, **common))

  # Whole batches only, as the naive loop and the Loader rows (drop_remainder) see.
  whole = per_epoch * batch_size
  device = DeviceBatches({"waveform": ds.waveforms()[:whole], "label": ds.labels[:whole]},
                         batch_size=batch_size, seed=0, shuffle=True,
                         mesh=parallel.make_data_mesh(devices=1))
  epoch = itertools.count()

  def device_epochs():
    for _ in range(epochs):
      for batch in device.epoch(next(epoch)):
        last = batch["waveform"]
    last.block_until_ready()

  seconds = time_call(device_epochs, repeats=repeats)
  rows.append(row("batches_from_store", mode="DeviceBatches (device-resident)",
                  ours=epochs * per_epoch / seconds, **common))
  return rows


def main() -> None:
  p = parser(__doc__.split("\n")[0])
  p.add_argument("--clips", type=int, default=8,
                 help="distinct 30 s clips generated per format (default 8)")
  p.add_argument("--store-clips", type=int, default=96,
                 help="30 s clips in the benchmark store (default 96)")
  p.add_argument("--batch-size", type=int, default=32, help="batch size (default 32)")
  p.add_argument("--epochs", type=int, default=8, help="store epochs per timing (default 8)")
  p.add_argument("--repeats", type=int, default=3, help="timed repeats, best kept (default 3)")
  args = p.parse_args()
  with tempfile.TemporaryDirectory() as tmp:
    mp3 = _write_clips(os.path.join(tmp, "mp3"), n=args.clips, ext=".mp3", seconds=30.0,
                       rate=44100, channels=2)
    wav = _write_clips(os.path.join(tmp, "wav"), n=args.clips, ext=".wav", seconds=30.0,
                       rate=44100, channels=2)
    rows = bench_decode(tmp, mp3=mp3, wav=wav, repeats=args.repeats)
    rows += bench_batches(tmp, mp3=mp3, clips=args.store_clips, batch_size=args.batch_size,
                          epochs=args.epochs, repeats=args.repeats)
  emit("pipeline", rows, as_json=args.json, markdown=args.markdown,
       extra_columns=("mode", "format", "batch"))


if __name__ == "__main__":
  main()
