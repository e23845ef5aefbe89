"""Songs/s and peak host memory of ``merjax predict`` on a library of full-length songs.

Case ``predict`` (DESIGN.md section 5), one row per classifier (``--which``, default ``cnn`` and
``hybrid``), segment policy (``--segment``, default ``windows``: 30 s windows at most 30 s
apart, at most 10, covering a 3-5 minute song) and library size (``--songs``, default 1, 100
and 1000): ``merjax predict FOLDER --out results.jsonl`` with its defaults (worker processes for
decoding and features, batched device inference), against a straightforward per-file loop in
one process: ``librosa.load`` of the whole song, the same windows, ``librosa`` log-mel of each
window (and for the hybrid the builtin features of each window), one model call per song. The
loop runs on at most ``--reference-songs`` (default 100) songs of each library, since its
songs/s does not depend on the library's size. Both run as their own process, start-up and
compilation included; peak memory is the largest sum of the resident memory of the process and
its children, sampled every 20 ms. ``max_prob_diff`` is the largest difference between the two
runs' song probabilities (float32 mel and batching differences only).

Songs are generated: ``--distinct`` (default 10) songs of ``--seconds`` (default 180-300 s),
44.1 kHz stereo, written as ``--format`` (default OGG); a library of N songs hard-links them
under N names, so the disk holds only the distinct ones while every song is decoded in full.
The model has the paper's sizes and random weights: speed does not depend on the weights.
``--songs 1 3 --seconds 20 40 --distinct 2`` checks that the script works in a few minutes;
the full default run takes more than an hour on 2 cores (mostly the 1000-song libraries).

``--cpu-profile`` replaces the runs by the CPU seconds per song of each component of both
paths (:func:`cpu_profile`), which a busy machine does not distort. On the 2-core AMD EPYC
host (3-5 minute OGGs, 9.7 windows per song, ``--which cnn``), per song:

=========================  ==========================  ==================================
component                  ``merjax predict``          per-file loop
=========================  ==========================  ==================================
decode, downmix, resample  0.60 (streamed, to_mono)    0.90-1.36 (``librosa.load``)
carry to the main process  0.01 (+ ~0.05 pipe)         -
log-mel                    0.08 (XLA, batch 1)         0.61 (``librosa``, per window)
CNN                        0.31 (batch 1)              0.61 (one call of ~10 windows)
total                      ~1.0-1.25                   2.1-2.6
=========================  ==========================  ==================================

Of the decode, libvorbis itself takes ~0.55 s in both paths and resampling (soxr_hq, the same as
librosa's default, bit-identical samples) only ~0.06-0.08 s: a cheaper resampler would save
under 0.05 s, so there is none. ``librosa.load``'s ``np.mean`` downmix of interleaved stereo
costs 0.26 s and holding the whole 44.1 kHz stereo signal costs 0.2-0.4 s of page faults;
merjax's decode sums the channels (bit-identical) block by block. A CNN call on more than two 30
s windows makes XLA:CPU take fresh pages for every activation above glibc's 32 MB ``mmap``
threshold (0.065 CPU s per window instead of 0.035), hence batches of one window on CPU. The
loop is the straightforward one the case asks for: the same samples (``librosa.load`` equals
merjax's decode bit for bit), the same windows, a mel within float rounding of merjax's
(``max_prob_diff`` ~2e-6), XLA using both cores inside its model call; it compiles once per
distinct window count (4 for 180-300 s songs, ~1-2 s each) and its one call per song pays the
page faults above (~0.3 s per song: a loop calling the model once per window would be that much
faster). The projected 2-core ratio: the loop runs one core except inside the model call, which
XLA spreads over both (1.9-2.3 s of wall per song; 2.46 CPU s per song measured over whole
runs); ``merjax predict`` keeps both cores busy with two decoding workers plus the device loop
(1.12 CPU s per song measured over whole runs of 12 and 24 songs: 0.55-0.65 s of wall), so
2.9-4.2 times the loop's songs/s, most likely about 3.5, start-up (JAX import, one
compilation, two workers: ~7 CPU s against the loop's ~5.5) amortised over 100 songs.
Libvorbis (~0.55 s) and the CNN (~0.3 s) bound it at about 2 / 0.9 = 2.2 songs/s on 2 cores.

Run: ``python benchmarks/predict.py [--songs 1 100 1000] [--which cnn hybrid]
[--segment windows middle] [--json] [--markdown PATH]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import _positive_int, emit, parser, row  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _write_songs(folder: str, *, n: int, seconds: tuple[float, float], fmt: str) -> list[str]:
  """Distinct songs: chords changing every 2 s over a noise floor, a pulse at 2 beats/s."""
  import soundfile as sf

  rate = 44100
  rng = np.random.default_rng(0)
  os.makedirs(folder, exist_ok=True)
  paths = []
  for i in range(n):
    length = int(rng.uniform(*seconds) * rate)
    t = np.arange(length) / rate
    y = np.zeros((2, length), np.float32)
    for start in range(0, length, 2 * rate):
      part = slice(start, start + 2 * rate)
      freqs = 110.0 * 2 ** (rng.integers(0, 36, size=(2, 3)) / 12)
      y[:, part] = np.sin(2 * np.pi * freqs[:, :, None] * t[part]).sum(axis=1) / 6
    y *= 0.6 + 0.4 * (np.sin(2 * np.pi * 2.0 * t) > 0)
    y += 0.02 * rng.standard_normal(y.shape).astype(np.float32)
    path = os.path.join(folder, f"distinct{i:03d}.{fmt}")
    # In one call libsndfile's Vorbis encoder crashes on minutes of audio; blocks of 1 s do not.
    with sf.SoundFile(path, "w", rate, 2, format=fmt.upper()) as f:
      for start in range(0, length, rate):
        f.write(y[:, start:start + rate].T)
    paths.append(path)
  return paths


def _library(folder: str, sources: list[str], n: int) -> str:
  os.makedirs(folder)
  for i in range(n):
    source = sources[i % len(sources)]
    os.link(source, os.path.join(folder, f"song{i:05d}{os.path.splitext(source)[1]}"))
  return folder


def _run_measured(command: list[str]) -> tuple[float, float]:
  """(wall seconds, peak MiB of the process tree) of a command that must succeed."""
  import psutil

  env = dict(os.environ, PYTHONPATH=os.pathsep.join([REPO, os.environ.get("PYTHONPATH", "")]))
  start = time.perf_counter()
  process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True)
  peak = 0
  stop = threading.Event()

  def sample() -> None:
    nonlocal peak
    root = psutil.Process(process.pid)
    while not stop.is_set():
      try:
        total = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
      except psutil.Error:
        total = 0
      peak = max(peak, total)
      stop.wait(0.02)

  sampler = threading.Thread(target=sample, daemon=True)
  sampler.start()
  _, err = process.communicate()
  wall = time.perf_counter() - start
  stop.set()
  sampler.join()
  if process.returncode != 0:
    raise SystemExit(f"{' '.join(command)} failed ({process.returncode}):\n{err[-2000:]}")
  return wall, peak / 2**20


def reference_loop(folder: str, *, model_dir: str, which: str, segment: str, songs: int,
                   out: str) -> None:
  """The straightforward per-file loop: decode, windows, librosa mel, one model call per song.

  Runs on the first ``songs`` files of ``folder`` (sorted).
  """
  import librosa

  from merjax.audio.io import fix_length
  from merjax.features import extract_features
  from merjax.inference.directory import load_model
  from merjax.inference.songs import DEFAULT_MAX_WINDOWS, window_starts

  model = load_model(model_dir)
  audio = model.config.audio
  with open(out, "w") as f:
    for name in sorted(os.listdir(folder))[:songs]:
      path = os.path.join(folder, name)
      y, _ = librosa.load(path, sr=audio.sample_rate)
      starts = window_starts(n_samples=len(y), clip_samples=audio.clip_samples,
                             segment=segment, hop_samples=audio.clip_samples,
                             max_windows=DEFAULT_MAX_WINDOWS)
      clips = np.stack([fix_length(y[s:s + audio.clip_samples], size=audio.clip_samples)
                        for s in starts])
      mels = np.stack([librosa.power_to_db(
          librosa.feature.melspectrogram(y=c, sr=audio.sample_rate), ref=audio.ref,
          amin=audio.amin, top_db=audio.top_db) for c in clips])
      features = (model.preprocess_features(extract_features(clips)) if which != "cnn"
                  else None)
      logits = model.logits(mels=model.normalise_mels(mels), features=features, which=which)
      probabilities = np.exp(logits - logits.max(-1, keepdims=True))
      probabilities /= probabilities.sum(-1, keepdims=True)
      f.write(json.dumps({"path": path, "probabilities": probabilities.mean(0).tolist()}) + "\n")


def cpu_profile(sources: list[str], *, model_dir: str, which: str, repeats: int = 2
                ) -> list[dict]:
  """CPU seconds per song of each component of both paths, in this one process.

  Process CPU time (user + system, all threads) is what a component costs whatever else the
  machine runs, unlike wall time. Each component runs ``repeats`` times over the distinct
  songs after one warm-up pass (which also compiles every shape). ``ours``: the worker's
  :func:`merjax.inference.songs.read_windows` (streamed decode, downmix, soxr_hq, windows), the
  pickling that carries its windows to the main process, then the jitted log-mel and CNN at
  the default batch size (one jitted function in ``merjax predict``); ``reference``: the
  per-file loop's ``librosa.load``, ``librosa`` mel and one model call per song. For
  ``hybrid`` and ``dnn`` both compute the same handcrafted features of every window.
  """
  import pickle
  import resource

  import jax
  import librosa

  from merjax.audio.io import fix_length
  from merjax.audio.spectral import _log_mel
  from merjax.features import extract_features
  from merjax.inference.artefact import forward
  from merjax.inference.directory import load_model
  from merjax.inference.predict import default_batch_size
  from merjax.inference.songs import DEFAULT_MAX_WINDOWS, read_windows, window_starts

  model = load_model(model_dir)
  audio, batch = model.config.audio, default_batch_size()
  variables = jax.device_put(model.variables(which=which))
  log_mel = jax.jit(lambda w: (_log_mel(
      w, sample_rate=audio.sample_rate, n_fft=audio.n_fft, hop_length=audio.hop_length,
      n_mels=audio.n_mels, fmin=audio.fmin, fmax=audio.fmax, ref=audio.ref, amin=audio.amin,
      top_db=audio.top_db) - model.mel_mean) / model.mel_std)

  def ours_windows(path):
    return read_windows(path, sample_rate=audio.sample_rate, clip_samples=audio.clip_samples,
                        segment="windows", hop_samples=audio.clip_samples).windows

  def in_batches(windows, fn):
    for start in range(0, len(windows), batch):
      part = fix_length(windows[start:start + batch].T, size=batch).T  # pad the last batch
      np.asarray(fn(part))

  def reference_mels(clips):
    return model.normalise_mels(np.stack([librosa.power_to_db(
        librosa.feature.melspectrogram(y=c, sr=audio.sample_rate), ref=audio.ref,
        amin=audio.amin, top_db=audio.top_db) for c in clips]))

  songs = []
  for path in sources:  # the inputs each component needs, made once
    y = librosa.load(path, sr=audio.sample_rate)[0]
    starts = window_starts(n_samples=len(y), clip_samples=audio.clip_samples, segment="windows",
                           hop_samples=audio.clip_samples, max_windows=DEFAULT_MAX_WINDOWS)
    clips = np.stack([fix_length(y[s:s + audio.clip_samples], size=audio.clip_samples)
                      for s in starts])
    songs.append((path, clips, reference_mels(clips)))
  components = {
      "decode": (lambda p, c, m: ours_windows(p), lambda p, c, m: librosa.load(
          p, sr=audio.sample_rate)),
      "transfer": (lambda p, c, m: pickle.loads(pickle.dumps(c)), None),
      "log-mel": (lambda p, c, m: in_batches(c, log_mel), lambda p, c, m: reference_mels(c)),
      "model": (lambda p, c, m: in_batches(m, lambda mels: forward(
          variables, {"mels": mels}, which="cnn", model_config=model.config.model)),
                lambda p, c, m: model.logits(mels=m, which="cnn", batch_size=32)),
  }
  if which != "cnn":
    features = lambda p, c, m: extract_features(c, sample_rate=audio.sample_rate,  # noqa: E731
                                                backend=model.config.features_backend)
    components["features"] = (features, features)

  def cpu(fn) -> float | None:
    if fn is None:
      return None
    for song in songs:
      fn(*song)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    before = usage.ru_utime + usage.ru_stime
    for _ in range(repeats):
      for song in songs:
        fn(*song)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return (usage.ru_utime + usage.ru_stime - before) / (repeats * len(songs))

  rows = []
  for name, (ours_fn, reference_fn) in components.items():
    rows.append(row(f"{which} {name}", unit="CPU s/song", ours=cpu(ours_fn),
                    reference=cpu(reference_fn), reference_name="per-file loop"))
  windows = float(np.mean([len(c) for _, c, _ in songs]))
  rows.append(row(f"{which} total", unit="CPU s/song", ours=sum(r["ours"] for r in rows),
                  reference=sum(r["reference"] or 0.0 for r in rows),
                  reference_name="per-file loop"))
  for r in rows:
    r["windows_per_song"] = windows
  return rows


def _probabilities(path: str) -> dict[str, np.ndarray]:
  out = {}
  for line in open(path):
    record = json.loads(line)
    p = record["probabilities"]
    out[os.path.basename(record["path"])] = np.asarray(
        list(p.values()) if isinstance(p, dict) else p)
  return out


def _build_model(path: str) -> None:
  from merjax.config import paper_config
  from merjax.data.synthetic import generate
  from merjax.inference.artefact import HybridModel
  from merjax.inference.directory import save_model

  config = paper_config("merge_audio_balanced")
  clips = generate(clips_per_quadrant=1, seconds=config.audio.clip_seconds, seed=0).waveforms
  save_model(HybridModel.initialise(config, waveforms=clips), path)


def main() -> None:
  p = parser(__doc__.splitlines()[0])
  p.add_argument("--songs", type=_positive_int, nargs="+", default=[1, 100, 1000],
                 help="library sizes (default: 1 100 1000)")
  p.add_argument("--which", nargs="+", choices=("cnn", "dnn", "hybrid"),
                 default=["cnn", "hybrid"], help="classifiers (default: cnn hybrid)")
  p.add_argument("--seconds", type=float, nargs=2, default=[180.0, 300.0],
                 metavar=("MIN", "MAX"), help="song lengths (default: 180 300)")
  p.add_argument("--distinct", type=_positive_int, default=10,
                 help="distinct generated songs (default: 10)")
  p.add_argument("--format", choices=("ogg", "flac", "wav", "mp3"), default="ogg",
                 help="file format of the songs (default: ogg)")
  p.add_argument("--workers", type=_positive_int, default=None,
                 help="merjax predict --workers (default: its own, cores up to 4)")
  p.add_argument("--segment", nargs="+", choices=("windows", "first", "middle"),
                 default=["windows"], help="merjax predict --segment policies, the reference "
                 "taking the same windows (default: windows)")
  p.add_argument("--reference-songs", type=_positive_int, default=100,
                 help="the per-file loop runs on at most this many songs of each library: its "
                 "songs/s does not depend on the library's size (default: 100)")
  p.add_argument("--cpu-profile", action="store_true",
                 help="instead of the runs: CPU seconds per song of each component of both "
                 "paths, measured in one process (robust on a busy machine)")
  p.add_argument("--reference", nargs=6, metavar=("FOLDER", "MODEL", "WHICH", "SEGMENT",
                                                  "SONGS", "OUT"),
                 help=argparse.SUPPRESS)  # the reference loop's own process
  args = p.parse_args()
  if args.reference:
    folder, model_dir, which, segment, songs, out = args.reference
    reference_loop(folder, model_dir=model_dir, which=which, segment=segment, songs=int(songs),
                   out=out)
    return

  rows = []
  with tempfile.TemporaryDirectory() as tmp:
    model_dir = os.path.join(tmp, "model")
    _build_model(model_dir)
    sources = _write_songs(os.path.join(tmp, "distinct"), n=args.distinct,
                           seconds=tuple(args.seconds), fmt=args.format)
    if args.cpu_profile:
      rows = [r for which in args.which
              for r in cpu_profile(sources, model_dir=model_dir, which=which)]
      emit("predict", rows, as_json=args.json, markdown=args.markdown,
           extra_columns=("windows_per_song",))
      return
    for n in args.songs:
      folder = _library(os.path.join(tmp, f"library{n}"), sources, n)
      for which, segment in itertools.product(args.which, args.segment):
        ours_out = os.path.join(tmp, f"ours-{which}-{segment}-{n}.jsonl")
        command = [sys.executable, "-m", "merjax.cli", "predict", folder, "--model", model_dir,
                   "--which", which, "--segment", segment, "--out", ours_out, "--no-progress"]
        if args.workers is not None:
          command += ["--workers", str(args.workers)]
        wall, peak = _run_measured(command)
        ref_n = min(n, args.reference_songs)
        ref_out = os.path.join(tmp, f"reference-{which}-{segment}-{n}.jsonl")
        ref_wall, ref_peak = _run_measured(
            [sys.executable, os.path.abspath(__file__), "--reference", folder, model_dir, which,
             segment, str(ref_n), ref_out])
        ours, reference = _probabilities(ours_out), _probabilities(ref_out)
        diff = max(float(np.abs(ours[k] - reference[k]).max()) for k in reference)
        rows.append(row(which, segment=segment, songs=n, reference_songs=ref_n, unit="songs/s",
                        ours=n / wall, reference=ref_n / ref_wall,
                        reference_name="per-file loop: librosa.load, librosa mel, one model "
                        "call per song", higher_is_better=True, peak_mib=peak,
                        reference_peak_mib=ref_peak, max_prob_diff=diff))
        print(f"# {which} {segment} {n} songs: ours {wall:.1f} s, {peak:.0f} MiB; reference "
              f"{ref_n} songs {ref_wall:.1f} s, {ref_peak:.0f} MiB", file=sys.stderr)
      for name in os.listdir(folder):
        os.unlink(os.path.join(folder, name))
  if not args.json:
    print(f"# {args.distinct} distinct {args.format.upper()} songs of {args.seconds[0]:g}-"
          f"{args.seconds[1]:g} s, 44.1 kHz stereo; merjax predict defaults")
  emit("predict", rows, as_json=args.json, markdown=args.markdown,
       extra_columns=("segment", "songs", "reference_songs", "peak_mib", "reference_peak_mib",
                      "max_prob_diff"))


if __name__ == "__main__":
  main()
