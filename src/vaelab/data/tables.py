"""CSV and Parquet tables of numeric columns -> rows ``(N, P)``, standardized per column.

The mean and standard deviation of each column come from the training split alone and are
stored with the run (``RUN/data.json``), so new rows are encoded with the same transform.
"""

from __future__ import annotations

import csv
import difflib
import math
from pathlib import Path

import numpy as np

from ..errors import VaelabError

TABLE_SUFFIXES = (".csv", ".parquet", ".pq")
LISTED_COLUMNS = 20  # a misspelt --label-column lists every column up to this many


def read_table(
    path: Path, label_column: str = "", optional_label: bool = False
) -> tuple[np.ndarray, np.ndarray | None, dict]:
    """``(x, y, info)``: the numeric columns as float64 ``(N, P)``, the label column as
    integers ``(N,)`` (or None), and ``info`` with the ``columns`` and ``label_names`` (label
    i is the string ``label_names[i]``).
    With ``optional_label`` a missing label column means no labels, not an error."""
    names, columns = _read_parquet(path) if path.suffix != ".csv" else _read_csv(path)
    if optional_label and label_column not in names:
        label_column = ""
    if label_column and label_column not in names:
        raise VaelabError(
            f"{path} has no column {label_column!r} for --label-column; "
            + _candidates(label_column, names)
        )
    y, label_names = None, []
    if label_column:
        raw = columns.pop(names.index(label_column))
        names = [n for n in names if n != label_column]
        label_names = sorted(set(raw), key=_sort_key)
        codes = {name: i for i, name in enumerate(label_names)}
        y = np.array([codes[v] for v in raw], dtype=np.int64)
    if not names:
        raise VaelabError(f"{path} has no feature columns besides the label")
    x = np.empty((len(columns[0]) if columns else 0, len(names)), dtype=np.float64)
    for j, (name, values) in enumerate(zip(names, columns, strict=True)):
        x[:, j] = _numeric(path, name, values)
    if len(x) < 10:
        raise VaelabError(f"{path} holds {len(x)} rows; at least 10 are needed to split")
    label_names = [str(name) for name in label_names]  # a Parquet label may be a number
    return x, y, {"columns": names, "label_column": label_column, "label_names": label_names}


def _candidates(name: str, names: list[str]) -> str:
    """The columns a misspelt ``name`` may have meant: all of them, or past
    :data:`LISTED_COLUMNS` the nearest by spelling (difflib's ratio), nearest first."""
    if len(names) <= LISTED_COLUMNS:
        return f"it has {', '.join(names)}"
    ratio = {n: difflib.SequenceMatcher(None, name, n).ratio() for n in names}
    nearest = sorted(names, key=lambda n: -ratio[n])[:LISTED_COLUMNS]
    return f"of its {len(names)} columns the nearest are {', '.join(nearest)}"


def standardize(x_train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation (float64) of the training rows; a constant
    column gets standard deviation 1, so it maps to 0 and not to NaN."""
    mean = x_train.mean(0)
    std = x_train.std(0)
    return mean, np.where(std > 0, std, 1.0)


def apply_transform(x: np.ndarray, transform: dict) -> np.ndarray:
    """(x - mean) / std as float32 ``(N, P)``, with the run's stored statistics."""
    mean = np.asarray(transform["mean"], dtype=np.float64)
    std = np.asarray(transform["std"], dtype=np.float64)
    return ((x - mean) / std).astype(np.float32)


def _sort_key(value):
    return (0, float(value), "") if _is_number(value) else (1, 0.0, str(value))


def _is_number(value) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return True


def _numeric(path: Path, name: str, values) -> np.ndarray:
    out = np.empty(len(values), dtype=np.float64)
    for i, value in enumerate(values):
        if value is None or value == "":
            raise VaelabError(
                f"{path}: column {name!r}, row {i + 1} is empty; fill or drop missing values"
            )
        try:
            out[i] = float(value)
        except (TypeError, ValueError):
            raise VaelabError(
                f"{path}: column {name!r}, row {i + 1}: {value!r} is not a number; "
                "tables must be numeric (name a label column with --label-column)"
            ) from None
        if not math.isfinite(out[i]):
            raise VaelabError(
                f"{path}: column {name!r}, row {i + 1} is {value!r}; fill or drop missing values"
            )
    return out


def _read_csv(path: Path) -> tuple[list[str], list[list]]:
    try:
        with path.open(newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise VaelabError(f"cannot read CSV file {path}: {exc}") from None
    rows = [r for r in rows if r]  # blank lines
    if not rows:
        raise VaelabError(f"{path} is empty; a CSV table needs a header row and data rows")
    header, body = [h.strip() for h in rows[0]], rows[1:]
    if len(set(header)) != len(header) or any(not h for h in header):
        raise VaelabError(f"{path}: the header row must name every column once, got {header}")
    for i, row in enumerate(body):
        if len(row) != len(header):
            raise VaelabError(
                f"{path}: row {i + 1} has {len(row)} fields but the header has {len(header)}"
            )
    return header, [[row[j].strip() for row in body] for j in range(len(header))]


def _read_parquet(path: Path) -> tuple[list[str], list[list]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise VaelabError(
            "reading Parquet needs pyarrow: pip install 'vaelab[parquet]', or save the table "
            "as CSV"
        ) from None
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid, OSError, ...
        raise VaelabError(f"cannot read Parquet file {path}: {exc}") from None
    return list(table.column_names), [table.column(n).to_pylist() for n in table.column_names]
