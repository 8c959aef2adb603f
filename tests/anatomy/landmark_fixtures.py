"""Helpers for the built-in landmark tests: re-stored volumes and overlap counts."""

from __future__ import annotations

import numpy as np

from vascalc.imaging.grid import Grid
from vascalc.imaging.volume import Volume


def restore_flipped(volume: Volume, axis: int) -> Volume:
    """The same image stored with array ``axis`` (0 = z, 1 = y, 2 = x) reversed.

    The physical image is unchanged: the matching direction column is negated and the origin moved
    to the voxel that is now first, as a scanner storing feet-first (or anterior-first) would do.
    """
    g = volume.grid
    last = np.zeros(3)
    last[axis] = g.shape[axis] - 1
    origin = g.index_to_lps(last)
    d = g.direction_matrix.copy()
    d[:, 2 - axis] *= -1.0  # direction columns are in (x, y, z) = (axis 2, 1, 0) order
    grid = Grid(g.shape, g.spacing_mm, tuple(float(v) for v in origin), tuple(float(v) for v in d.ravel()))
    return Volume(np.ascontiguousarray(np.flip(volume.hu, axis=axis)), grid, volume.info)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Sørensen–Dice of two boolean masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.count_nonzero(a & b)) / total


def centroid_index(mask: np.ndarray) -> tuple[int, int, int]:
    """Rounded (z, y, x) centroid of a mask."""
    return tuple(int(v) for v in np.round(np.argwhere(mask).mean(axis=0)))
