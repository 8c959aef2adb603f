"""JSON and CSV writers shared by every kind of result.

``result.json`` is written with sorted-free, stable key order and no timestamps, so that the same
input gives the same bytes. Non-finite floats become ``null`` (JSON has no NaN).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from vascalc.jsonable import to_jsonable


def write_json(data: dict, path: Path) -> Path:
    """Write ``data`` as indented UTF-8 JSON (stable bytes for the same content)."""
    text = json.dumps(to_jsonable(data), indent=2, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def flatten_record(record: dict, prefix: str = "") -> dict:
    """Flatten nested dicts with ``_`` joined keys; lists (profiles, per-slice data) are dropped."""
    flat: dict = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_record(value, prefix=f"{name}_"))
        elif isinstance(value, (list, tuple, np.ndarray)):
            continue
        else:
            flat[name] = to_jsonable(value)
    return flat


def write_csv(records: Iterable[dict], path: Path, leading: dict | None = None) -> Path:
    """Write one row per record (flattened), with optional ``leading`` columns on every row."""
    rows = [{**(leading or {}), **flatten_record(r)} for r in records]
    pd.DataFrame(rows).to_csv(path, index=False, lineterminator="\n")
    return path
