"""Overlap of binary masks: Dice over a stack of slices, globally and per slice (SCORING.md D.1).

Pure numpy. ``global`` Dice pools every pixel of the stack (2TP / (2TP + FP + FN)); the
``per_slice_mean`` aggregation of S4 averages the Dice of each slice, skipping slices that are
empty in both masks (D.1: [T; S4 does not say]). Both masks empty → Dice 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DiceScores:
    """Dice of a predicted stack against its reference.

    ``global_dice``: pooled over all pixels. ``per_slice_mean_dice``: mean over slices not empty in
    both (NaN when every slice is empty in both). ``n_slices_scored``: slices entering that mean;
    ``n_slices``: all slices.
    """

    global_dice: float
    per_slice_mean_dice: float
    n_slices_scored: int
    n_slices: int

    def to_dict(self) -> dict:
        return {
            "global_dice": self.global_dice,
            "per_slice_mean_dice": self.per_slice_mean_dice,
            "n_slices_scored": self.n_slices_scored,
            "n_slices": self.n_slices,
        }


def dice(prediction: np.ndarray, reference: np.ndarray) -> float:
    """Dice 2TP / (2TP + FP + FN) of two boolean arrays of one shape; 1.0 when both are empty."""
    prediction, reference = np.asarray(prediction, bool), np.asarray(reference, bool)
    if prediction.shape != reference.shape:
        raise ValueError(f"shapes differ: {prediction.shape} vs {reference.shape}")
    tp = np.count_nonzero(prediction & reference)
    total = np.count_nonzero(prediction) + np.count_nonzero(reference)
    return 1.0 if total == 0 else float(2.0 * tp / total)


def per_slice_dice(prediction: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Dice of each slice of ``(n, h, w)`` stacks; NaN for slices empty in both masks."""
    prediction = np.asarray(prediction, bool).reshape(len(prediction), -1)
    reference = np.asarray(reference, bool).reshape(len(reference), -1)
    tp = np.count_nonzero(prediction & reference, axis=1)
    total = np.count_nonzero(prediction, axis=1) + np.count_nonzero(reference, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 2.0 * tp / total, np.nan)


def dice_scores(prediction: np.ndarray, reference: np.ndarray) -> DiceScores:
    """Global and per-slice-mean Dice of ``(n, h, w)`` boolean stacks (see module docstring)."""
    per_slice = per_slice_dice(prediction, reference)
    scored = per_slice[~np.isnan(per_slice)]
    return DiceScores(
        global_dice=dice(prediction, reference),
        per_slice_mean_dice=float(scored.mean()) if scored.size else float("nan"),
        n_slices_scored=int(scored.size),
        n_slices=int(len(per_slice)),
    )
