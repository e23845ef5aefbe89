"""Precomputed features from a CSV table keyed by song id (the ``table`` backend).

Reads the authors' 4QAED ``all_features.csv`` as published with Panda et al. (2020): a ``Song``
column and the 1714 features of the paper, named ``F0001``.. (MIR Toolbox, Marsyas, PsySound3),
``ORIGINAL-...`` and ``VOICE-...`` (the novel features). When a table has such columns, exactly
those are the features; any other table gives every numeric column but the id column (or the
columns you name).

References:
  R. Panda, R. Malheiro, R. P. Paiva, "Novel Audio Features for Music Emotion Recognition",
  IEEE TAFFC 2020; data at https://github.com/renatopanda/TAFFC2018
"""

from __future__ import annotations

import csv
import os
import re
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from merjax.errors import MerjaxError
from merjax.features.featureset import FeatureSet, preview, repeated

_4QAED = re.compile(r"^(F\d+|ORIGINAL-.+|VOICE-.+)$")
_MISSING = {"", "na", "nan", "n/a", "null", "none", "?", "-"}
DEFAULT_ID_COLUMN = "Song"


def _delimiter(header: str) -> str:
  counts = {d: header.count(d) for d in (",", ";", "\t")}
  return max(counts, key=lambda d: counts[d])


def _number(text: str, decimal_comma: bool) -> float | None:
  """The cell's value, NaN for a missing-value marker, None for text that is no number."""
  text = text.strip()
  if text.lower() in _MISSING:
    return float("nan")
  if decimal_comma:
    text = text.replace(",", ".")
  try:
    return float(text)
  except ValueError:
    return None


def read_feature_table(path: str | os.PathLike, *, id_column: str | None = None,
                       columns: Sequence[str] | None = None,
                       delimiter: str | None = None) -> FeatureSet:
  """Reads a feature table.

  Args:
    path: the CSV file.
    id_column: the column of song ids; default ``Song`` when present, else the first column.
    columns: the feature columns; default the 4QAED columns (``F0001``.., ``ORIGINAL-...``,
      ``VOICE-...``) when the table has any, else every numeric column but the id.
    delimiter: ``,``, ``;`` or tab; default detected from the header line. With ``;`` or tab,
      decimal commas are accepted.

  Returns:
    A :class:`FeatureSet` (``backend="table"``) in file order; empty cells and ``NA`` are NaN.
    A non-numeric cell in a numeric column is NaN too (a missing value, which training imputes
    from the training split), and a warning names its row and column; columns without any
    number (titles, artists) are left out with a warning naming them.

  Raises:
    MerjaxError: unreadable file, ragged rows, duplicate or missing ids, a chosen column
      (``columns``) without numbers, or no numeric column at all.
  """
  path = Path(path)
  try:
    with open(path, newline="", encoding="utf-8-sig") as f:
      header_line = f.readline()
      f.seek(0)
      sep = delimiter or _delimiter(header_line)
      rows = list(csv.reader(f, delimiter=sep))
  except (OSError, UnicodeDecodeError) as error:
    raise MerjaxError(f"cannot read the feature table {path}: {error}") from None
  rows = [r for r in rows if any(cell.strip() for cell in r)]
  if len(rows) < 2:
    raise MerjaxError(f"feature table {path} has no data rows")
  header = [h.strip() for h in rows[0]]
  body = rows[1:]
  bad = [i + 2 for i, r in enumerate(body) if len(r) != len(header)]
  if bad:
    raise MerjaxError(f"feature table {path}: row(s) {preview(bad)} do not have the "
                      f"{len(header)} columns of the header")
  if id_column is None:
    id_column = DEFAULT_ID_COLUMN if DEFAULT_ID_COLUMN in header else header[0]
  if id_column not in header:
    raise MerjaxError(f"feature table {path} has no id column {id_column!r}; its columns are "
                      f"{preview(header)}")
  id_index = header.index(id_column)
  song_ids = np.array([r[id_index].strip() for r in body])
  duplicates = repeated(song_ids.tolist())
  if duplicates:
    raise MerjaxError(f"feature table {path} has several rows for song(s) {preview(duplicates)}")

  decimal_comma = sep != ","
  if columns is not None:
    missing = [c for c in columns if c not in header]
    if missing:
      raise MerjaxError(f"feature table {path} lacks column(s) {preview(missing)}")
    chosen = [header.index(c) for c in columns]
  else:
    chosen = [i for i, h in enumerate(header) if _4QAED.match(h) and i != id_index]
    if not chosen:
      chosen = [i for i in range(len(header)) if i != id_index]
  values = np.empty((len(body), len(chosen)), np.float64)
  text_columns, bad_cells = [], []
  keep = np.ones(len(chosen), bool)
  for j, col in enumerate(chosen):
    cells = [_number(r[col], decimal_comma) for r in body]
    numeric = [c for c in cells if c is not None and not np.isnan(c)]
    if not numeric and any(c is None for c in cells):
      # A column of text (a title, an artist) is no feature: left out, by name.
      if columns is not None:
        raise MerjaxError(f"feature table {path}, column {header[col]!r} holds no numbers "
                          f"(e.g. {body[0][col]!r} in row 2)")
      text_columns.append(header[col])
      keep[j] = False
      continue
    for i, cell in enumerate(cells):
      if cell is None:  # one odd cell is a missing value, never a reason to drop its column
        bad_cells.append(f"row {i + 2} column {header[col]!r} ({body[i][col].strip()!r})")
    values[:, j] = [np.nan if c is None else c for c in cells]
  if text_columns:
    warnings.warn(f"feature table {path}: left out text column(s) without any number "
                  f"{preview(text_columns)}", stacklevel=2)
  if bad_cells:
    warnings.warn(f"feature table {path}: {len(bad_cells)} non-numeric cell(s) read as missing "
                  f"values (imputed with the training split's median): {preview(bad_cells)}",
                  stacklevel=2)
  if not keep.any():
    raise MerjaxError(f"feature table {path} has no numeric feature columns")
  names = [header[c] for c, k in zip(chosen, keep) if k]
  return FeatureSet(song_ids, names, values[:, keep].astype(np.float32), "table")


def table_features(path: str | os.PathLike, song_ids: Sequence[str], *,
                   id_column: str | None = None, columns: Sequence[str] | None = None
                   ) -> FeatureSet:
  """The table's rows for ``song_ids``, in that order.

  Raises:
    MerjaxError: listing every song of ``song_ids`` that has no row in the table.
  """
  table = read_feature_table(path, id_column=id_column, columns=columns)
  missing = sorted(set(map(str, song_ids)) - set(table.song_ids.tolist()))
  if missing:
    raise MerjaxError(f"feature table {path} has no row for {len(missing)} song(s) of the "
                      f"dataset: {preview(missing)}")
  return table.select(song_ids)
