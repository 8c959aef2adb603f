"""k-fold cross-validation splits that keep neighbouring slices of one case apart.

Adjacent axial slices are nearly identical; a random slice-level split would validate on slices
whose neighbours were trained on, and overstate Dice. Two rules, chosen by the number of cases:

* at least ``n_folds`` cases: **group k-fold by case** — every slice of a case lies in one fold
  (cases shuffled with the seed, then dealt round-robin);
* fewer cases (e.g. the 60 DeepCalc slices, all from one case): each case's slices, in slice-index
  order, are cut into ``n_folds`` **contiguous blocks**; fold *k* validates on block *k* and trains
  on the rest minus ``gap_slices`` slices on each side of the block, so no training slice is within
  ``gap_slices`` of a validation slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vascalc.errors import InputError


@dataclass(frozen=True)
class Fold:
    """One cross-validation fold: positions into the slice set (sorted int arrays).

    ``excluded`` are the gap slices dropped from training next to the validation block.
    ``rule`` is ``'by_case'`` or ``'contiguous_blocks'``.
    """

    index: int
    train: np.ndarray
    validation: np.ndarray
    excluded: np.ndarray
    rule: str

    def describe(self, slice_index: np.ndarray) -> dict:
        val = slice_index[self.validation]
        return {
            "fold": self.index,
            "rule": self.rule,
            "n_train_slices": int(len(self.train)),
            "n_validation_slices": int(len(self.validation)),
            "n_gap_slices_excluded": int(len(self.excluded)),
            "validation_slice_index_range": [int(val.min()), int(val.max())] if len(val) else None,
        }


def kfold_slices(
    case_ids: tuple[str, ...] | list[str],
    slice_index: np.ndarray,
    n_folds: int = 4,
    *,
    gap_slices: int = 2,
    seed: int = 0,
) -> list[Fold]:
    """Split slices into ``n_folds`` folds without leakage between neighbours (module docstring).

    Every slice is validated exactly once. Raises :class:`InputError` when there are fewer slices
    per fold than one (n_folds larger than a case's slice count with a single case).
    """
    if n_folds < 2:
        raise InputError(f"cross-validation needs at least 2 folds, got {n_folds}")
    cases = np.asarray(case_ids, dtype=object)
    slice_index = np.asarray(slice_index)
    unique = sorted(set(cases.tolist()))
    folds_of = np.empty(len(cases), dtype=np.int64)
    if len(unique) >= n_folds:
        order = np.random.default_rng(seed).permutation(len(unique))
        fold_of_case = {unique[c]: k % n_folds for k, c in enumerate(order)}
        folds_of[:] = [fold_of_case[c] for c in cases.tolist()]
        rule, gap = "by_case", 0
    else:
        rule, gap = "contiguous_blocks", int(gap_slices)
        for case in unique:
            positions = np.flatnonzero(cases == case)
            if len(positions) < n_folds:
                raise InputError(f"{len(positions)} slices cannot be split into {n_folds} folds; use fewer folds")
            ordered = positions[np.argsort(slice_index[positions], kind="stable")]
            for k, block in enumerate(np.array_split(ordered, n_folds)):
                folds_of[block] = k
    folds = []
    for k in range(n_folds):
        validation = np.flatnonzero(folds_of == k)
        excluded = np.zeros(len(cases), dtype=bool)
        if gap:
            for case in set(cases[validation].tolist()):
                same = cases == case
                val_idx = slice_index[validation][cases[validation] == case]
                lo, hi = val_idx.min() - gap, val_idx.max() + gap
                excluded |= same & (slice_index >= lo) & (slice_index <= hi) & (folds_of != k)
        train = np.flatnonzero((folds_of != k) & ~excluded)
        if train.size == 0:
            # with one case the gap around the validation block can swallow every other slice
            raise InputError(f"fold {k + 1} of {n_folds} has no training slice left ({len(cases)} slices, gap "
                             f"{gap} each side of the validation block); use fewer folds, a smaller --gap or more slices")
        folds.append(Fold(index=k, train=train, validation=validation, excluded=np.flatnonzero(excluded), rule=rule))
    return folds
