"""JSON and CSV writers shared by every kind of result.

``result.json`` is written with sorted-free, stable key order and no timestamps, so that the same
input gives the same bytes. Non-finite floats become ``null`` (JSON has no NaN).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd


def to_jsonable(value: Any) -> Any:
    """Convert numpy scalars/arrays, tuples and non-finite floats into plain JSON types."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return [to_jsonable(v) for v in value.tolist()]
    if isinstance(value, (np.bool_, bool)):
        return bool(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return value.name
    return value


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
