"""Named parts of a vessel cut by landmark planes (SCORING.md A.8 "Regions").

A :class:`RegionSplit` is a plane perpendicular to the patient's superior axis, given as a
position in mm along that axis (the LPS "S" coordinate). Working in patient coordinates, not
slice indices, makes the split independent of storage order: arrays stored head-first or
feet-first, or with any axis flip, give the same parts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from vascalc.imaging.grid import Grid
from vascalc.imaging.labelmap import LabelMap


@dataclass(frozen=True)
class RegionSplit:
    """Split ``structure`` at ``plane_s_mm`` (LPS superior coordinate, mm) into two named parts.

    Voxels with S ≥ plane go to ``above``, the others to ``below``.
    """

    structure: str
    plane_s_mm: float
    above: str
    below: str
    source: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


def superior_mm(grid: Grid, zyx: np.ndarray) -> np.ndarray:
    """Superior (LPS z) coordinate in mm of (…, 3) (z, y, x) indices."""
    return grid.index_to_lps(np.asarray(zyx, dtype=float))[..., 2]


def _as_labels(labels: LabelMap | tuple[np.ndarray, dict[int, str]]) -> tuple[np.ndarray, dict[int, str]]:
    if isinstance(labels, LabelMap):
        return labels.labels, labels.names
    array, names = labels
    return np.asarray(array), dict(names)


def structure_extent_s_mm(labels: LabelMap | tuple[np.ndarray, dict[int, str]], grid: Grid,
                          name: str) -> tuple[float, float] | None:
    """(inferior, superior) S coordinate in mm of a structure's voxel centres, None if absent."""
    array, names = _as_labels(labels)
    ids = [i for i, n in names.items() if n == name]
    if not ids:
        return None
    mask = array == ids[0]
    # bounding box from axis projections, then voxel indices only inside it
    box = []
    for axis in range(3):
        hit = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    idx = np.argwhere(mask[tuple(box)]) + np.array([b.start for b in box])
    s = superior_mm(grid, idx)
    return float(s.min()), float(s.max())


def split_at_structure(labels: LabelMap | tuple[np.ndarray, dict[int, str]], grid: Grid, *,
                       structure: str, landmark: str, at: str = "bottom",
                       above: str | None = None, below: str | None = None) -> RegionSplit | None:
    """Split ``structure`` at the top (superior extent), bottom (inferior extent) or centre of a
    landmark mask; None when the landmark is absent. Part names default to
    ``<structure>_above_<landmark>`` / ``<structure>_below_<landmark>``.
    """
    extent = structure_extent_s_mm(labels, grid, landmark)
    if extent is None:
        return None
    lo, hi = extent
    plane = {"top": hi, "bottom": lo, "centre": 0.5 * (lo + hi), "center": 0.5 * (lo + hi)}.get(at)
    if plane is None:
        raise ValueError(f"'at' must be top, bottom or centre, got {at!r}")
    return RegionSplit(structure, float(plane), above or f"{structure}_above_{landmark}",
                       below or f"{structure}_below_{landmark}", source=f"{at} of {landmark}")


def thoracic_abdominal_split(labels: LabelMap | tuple[np.ndarray, dict[int, str]], grid: Grid,
                             structure: str = "aorta") -> RegionSplit | None:
    """Thoracic vs abdominal aorta: the plane halfway between the inferior extent of T12 and the
    superior extent of L1 (SCORING.md A.8, as Comp2Comp). With only one of the two vertebrae the
    plane is its inferior (T12) or superior (L1) extent; None when both are absent.
    """
    t12 = structure_extent_s_mm(labels, grid, "vertebrae_T12")
    l1 = structure_extent_s_mm(labels, grid, "vertebrae_L1")
    if t12 is None and l1 is None:
        return None
    if t12 is not None and l1 is not None:
        plane, source = 0.5 * (t12[0] + l1[1]), "midway T12 inferior / L1 superior"
    elif t12 is not None:
        plane, source = t12[0], "inferior extent of T12 (L1 absent)"
    else:
        plane, source = l1[1], "superior extent of L1 (T12 absent)"  # type: ignore[index]
    return RegionSplit(structure, float(plane), f"{structure}_thoracic", f"{structure}_abdominal", source)
