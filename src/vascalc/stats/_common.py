"""Input checks and small helpers shared by the statistics modules.

Every statistic takes plain array-likes; these helpers turn them into float arrays, drop incomplete
cases (reporting how many) and raise :class:`~vascalc.errors.InputError` with one clear sentence
for input that no statistic can use (mismatched lengths, text, too few cases).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats as _st

from vascalc.errors import InputError
from vascalc.jsonable import to_jsonable


def z_quantile(confidence: float) -> float:
    """Two-sided normal quantile Φ⁻¹(1 − α/2) for ``confidence`` = 1 − α (1.959964 for 0.95)."""
    check_confidence(confidence)
    return float(_st.norm.ppf(0.5 + confidence / 2.0))


def check_confidence(confidence: float) -> None:
    """Refuse a confidence level outside (0, 1)."""
    if not 0.0 < float(confidence) < 1.0:
        raise InputError(f"confidence level {confidence} must lie strictly between 0 and 1 (e.g. 0.95)")


def as_float_array(values: Any, name: str) -> np.ndarray:
    """1-D float array; text that is not a number raises :class:`InputError` (NaN marks missing)."""
    array = np.asarray(values)
    if array.ndim != 1:
        array = array.reshape(-1) if array.size == 1 else array
    if array.ndim != 1:
        raise InputError(f"{name} must be one column of numbers, got an array of shape {array.shape}")
    if array.dtype.kind in "biuf":
        return array.astype(float)
    try:
        return np.array([np.nan if v is None else float(v) for v in array.tolist()], dtype=float)
    except (TypeError, ValueError):
        raise InputError(f"{name} contains values that are not numbers; give numeric scores only") from None


def paired(reference: Any, predicted: Any, *, min_n: int = 1, what: str = "this statistic",
           names: tuple[str, str] = ("reference", "predicted")) -> tuple[np.ndarray, np.ndarray, int]:
    """Complete pairs ``(y, ŷ, n_dropped)``: equal lengths required, pairs with a NaN dropped.

    Missing values are handled by complete-case analysis (SCORING.md §D.4 edge cases [T]); the
    number dropped is returned so that every result can report it.
    """
    y = as_float_array(reference, names[0])
    yhat = as_float_array(predicted, names[1])
    if y.shape != yhat.shape:
        raise InputError(f"{names[0]} and {names[1]} have different lengths ({y.size} and {yhat.size}); "
                         "give one value of each per case")
    if np.isinf(y).any() or np.isinf(yhat).any():
        raise InputError(f"{names[0]} or {names[1]} contains an infinite value; give finite numbers")
    keep = ~(np.isnan(y) | np.isnan(yhat))
    n_dropped = int(y.size - keep.sum())
    y, yhat = y[keep], yhat[keep]
    require_n(y.size, min_n, what)
    return y, yhat, n_dropped


def require_n(n: int, min_n: int, what: str) -> None:
    """Raise :class:`InputError` when fewer than ``min_n`` complete cases are left."""
    if n < min_n:
        raise InputError(f"{what} needs at least {min_n} complete cases, got {n}")


class ResultMixin:
    """``to_dict()`` for the frozen result dataclasses (NaN becomes ``None`` so JSON stays valid)."""

    def to_dict(self) -> dict:
        return to_jsonable(self)
