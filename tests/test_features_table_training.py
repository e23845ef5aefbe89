"""`--features table --table CSV` end to end: a 4QAED-layout dataset, a generated table with
the 1,714 feature columns of the authors' ``all_features.csv``, train -> model directory ->
evaluate, and the clear errors around it."""

import csv
import json

import _fixtures as fx
import numpy as np
import pytest

from merjax.cli import main
from merjax.errors import MerjaxError

N_COLUMNS = 1714
# The authors' naming: F0001.. (MIR Toolbox, Marsyas, PsySound3), then the novel features.
COLUMNS = ([f"F{i:04d}" for i in range(1, 1701)] + [f"ORIGINAL-f{i}" for i in range(10)]
           + [f"VOICE-f{i}" for i in range(4)])
SECONDS = 3.0  # the shortest clip `merjax train` accepts (the CNN needs 74 frames)


def _write_table(path, songs, labels, *, seed=0):
  """The table: a Song column, an unrelated numeric column (not a feature), the 1,714 features
  (the first 20 carry the quadrant), and a row for a song outside the dataset."""
  rng = np.random.default_rng(seed)
  values = rng.standard_normal((len(songs) + 1, N_COLUMNS))
  values[:-1, :20] += 2.0 * np.asarray(labels)[:, None]
  with open(path, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["Song", "Year", *COLUMNS])
    for i, song in enumerate([*songs, "MT9999999999"]):
      writer.writerow([song, 2000 + i, *(f"{v:.6g}" for v in values[i])])


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
  from merjax.data.prepare import prepare
  from merjax.data.store import open_prepared

  root = tmp_path_factory.mktemp("table")
  src = fx.make_fourqaed(str(root / "src"), per_quadrant=5, seconds=SECONDS + 0.1)
  data_dir = root / "data"
  prepare("4qaed", manual_dir=src, data_dir=data_dir, clip_seconds=SECONDS, workers=1,
          progress=False)
  store = open_prepared("4qaed", data_dir)
  table = root / "all_features.csv"
  _write_table(table, [str(s) for s in store.song_ids], store.labels)
  model = root / "model"
  code = main(["train", "--dataset", "4qaed", "--data-dir", str(data_dir), "--features", "table",
               "--table", str(table), "--seconds", str(SECONDS), "--max-epochs", "1",
               "--augment", "none", "--workers", "1", "--out", str(model)])
  assert code == 0
  return {"data_dir": data_dir, "table": table, "model": model, "store": store}


@pytest.mark.slow  # trains on the fixture (about 45 s of CPU time for the module)
def test_the_model_records_the_table_and_trains_on_exactly_its_columns(setup):
  from merjax.features.source import file_sha256
  from merjax.inference.directory import load_model

  model = load_model(setup["model"])
  record = {"path": str(setup["table"].absolute()), "sha256": file_sha256(setup["table"]),
            "columns": N_COLUMNS, "id_column": None}
  assert model.config.features_backend == "table"
  assert model.config.features_table == record
  training = json.loads((setup["model"] / "training.json").read_text())
  assert training["features"] == {"backend": "table", "table": record}
  # The preprocessing was fitted on the table's 1,714 feature columns, in order ("Year" and
  # the id are not features), and the DNN's first layer takes what it kept.
  preprocessor = model.feature_preprocessor
  assert preprocessor.input_names == COLUMNS
  kept = len(preprocessor.output_names)
  assert 20 <= kept <= N_COLUMNS
  kernels = [v for k, v in _flatten(model.dnn["params"]).items() if k.endswith("kernel")]
  assert kernels[0].shape[0] == kept


def _flatten(tree, prefix=""):
  out = {}
  for key, value in tree.items():
    name = f"{prefix}/{key}"
    out.update(_flatten(value, name) if isinstance(value, dict) else {name: value})
  return out


@pytest.mark.slow
def test_the_dnn_inputs_are_the_tables_rows_after_the_fitted_preprocessing(setup):
  from merjax.features import read_feature_table
  from merjax.inference.directory import load_model
  from merjax.inputs.prepare import model_inputs

  model = load_model(setup["model"])
  store = setup["store"]
  index = np.flatnonzero(np.asarray(store.splits) == "test")
  ids = np.asarray(store.song_ids)[index]
  waveforms = store.waveforms(index)
  _, features = model_inputs(model, waveforms, song_ids=ids, workers=1, progress=False)
  rows = read_feature_table(setup["table"]).select([str(s) for s in ids]).values
  np.testing.assert_allclose(features, model.feature_preprocessor.transform(rows), rtol=1e-6)
  with pytest.raises(MerjaxError, match="needs that table's rows .* for the new songs"):
    model_inputs(model, waveforms, workers=1, progress=False)  # audio without song ids


@pytest.mark.slow
def test_evaluate_reads_the_recorded_table(setup, tmp_path, capsys):
  out = tmp_path / "eval"
  code = main(["evaluate", "--model", str(setup["model"]), "--dataset", "4qaed",
               "--data-dir", str(setup["data_dir"]), "--out", str(out)])
  assert code == 0
  metrics = json.loads((out / "metrics.json").read_text())
  assert set(metrics) == {"cnn", "dnn", "hybrid"} and metrics["dnn"]["n"] == 4


@pytest.mark.slow
def test_evaluate_with_another_table_of_the_same_columns(setup, tmp_path):
  other = tmp_path / "other.csv"
  store = setup["store"]
  _write_table(other, [str(s) for s in store.song_ids], store.labels, seed=1)
  out = tmp_path / "eval"
  assert main(["evaluate", "--model", str(setup["model"]), "--dataset", "4qaed", "--data-dir",
               str(setup["data_dir"]), "--table", str(other), "--out", str(out)]) == 0
  assert (out / "metrics.json").exists()


def test_require_audio_features_explains_table_models():
  from merjax.features.source import require_audio_features
  require_audio_features({"backend": "builtin", "table": None})
  record = {"backend": "table", "table": {"path": "/x/all_features.csv", "sha256": "ab" * 32,
                                          "columns": 1714, "id_column": None}}
  with pytest.raises(MerjaxError, match=r"all_features.csv \(1714 columns.*needs that table's "
                     "rows"):
    require_audio_features(record)


def _one_line_error(capsys, argv, message):
  assert main(argv) == 2
  err = capsys.readouterr().err
  assert message in err and err.count("\n") == 1, err


@pytest.mark.slow
def test_bad_feature_options_are_one_line_errors(setup, tmp_path, capsys):
  common = ["--dataset", "4qaed", "--data-dir", str(setup["data_dir"])]
  _one_line_error(capsys, ["train", *common, "--features", "table", "--out", str(tmp_path / "a")],
                  "--features table needs the CSV of features (--table CSV)")
  _one_line_error(capsys, ["train", *common, "--table", str(setup["table"]), "--out",
                           str(tmp_path / "b")], "--table is only used with --features table")
  _one_line_error(capsys, ["train", *common, "--features", "table", "--table",
                           str(tmp_path / "none.csv"), "--out", str(tmp_path / "c")],
                  "is not a file")
  model = ["evaluate", "--model", str(setup["model"]), *common]
  _one_line_error(capsys, [*model, "--features", "builtin"],
                  "trained on table features, not builtin")
  narrow = tmp_path / "narrow.csv"
  narrow.write_text("Song,F0001\n" + "".join(f"{s},1\n" for s in setup["store"].song_ids))
  _one_line_error(capsys, [*model, "--table", str(narrow)], "has 1 feature columns, not the 1714")


@pytest.mark.slow
def test_a_changed_table_is_noticed(setup, tmp_path, capsys):
  import shutil

  from merjax.features.source import table_inputs, table_record
  copy = tmp_path / "copy.csv"
  shutil.copy(setup["table"], copy)
  record = table_record(copy)
  ids = [str(s) for s in setup["store"].song_ids[:3]]
  values, names = table_inputs(record, ids)
  assert values.shape == (3, N_COLUMNS) and names == COLUMNS
  with open(copy, "a") as f:
    f.write("MT0000000001," + ",".join(["1"] * (N_COLUMNS + 1)) + "\n")
  with pytest.raises(MerjaxError, match="changed since it was recorded"):
    table_inputs(record, ids)
  with pytest.raises(MerjaxError, match="no row for 1 song"):
    table_inputs(table_record(copy), [*ids, "nobody"])


def _experiment(name):
  import importlib.util
  import sys
  from pathlib import Path
  path = Path(__file__).resolve().parents[1] / "experiments" / f"{name}.py"
  spec = importlib.util.spec_from_file_location(f"{name}_under_test", path)
  module = importlib.util.module_from_spec(spec)
  sys.modules[spec.name] = module
  spec.loader.exec_module(module)
  return module


def test_the_experiments_take_the_feature_options(tmp_path, capsys):
  paper = _experiment("paper")
  assert paper.main(["--features", "table", "--out", str(tmp_path / "p")]) == 2
  assert "--features table needs the CSV" in capsys.readouterr().err
  assert paper.experiment().tune.startup_trials is None  # Keras Tuner's default
  ablations = _experiment("ablations")
  with pytest.raises(MerjaxError, match="--table is only used with --features table"):
    ablations.main(["--quick", "--table", str(tmp_path / "t.csv"), "--out", str(tmp_path / "a")])
  table = tmp_path / "t.csv"
  _write_table(table, ["SYN-Q1-0000"], [0])
  from merjax.config import Config
  from merjax.features.source import features_config
  config = features_config(Config(), features="table", table=table)
  assert config.features_backend == "table" and config.features_table["columns"] == N_COLUMNS


@pytest.mark.slow
def test_predict_explains_that_a_table_model_needs_table_rows(setup, tmp_path, capsys):
  import soundfile as sf
  song = tmp_path / "new.wav"
  sf.write(song, np.zeros(16000 * 3, np.float32), 16000)
  assert main(["predict", str(song), "--model", str(setup["model"])]) == 2
  err = capsys.readouterr().err
  assert "trained on the feature table" in err and "needs that table's rows" in err
  assert err.count("\n") == 1
