"""Named parts of a vessel cut by landmark planes (SCORING.md A.8 "Regions").

A :class:`RegionSplit` is a plane perpendicular to the patient's superior axis, given as a
position in mm along that axis (the LPS "S" coordinate). Working in patient coordinates, not
slice indices, makes the split independent of storage order: arrays stored head-first or
feet-first, or with any axis flip, give the same parts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage as ndi

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


@dataclass(frozen=True)
class RegionRange:
    """One named part made of several vessels between two planes (LPS S coordinates in mm).

    Voxels with ``s_low_mm`` ≤ S < ``s_high_mm`` (None = open end) of any of ``structures`` count.
    Used for ranges that cross vessels, such as the aorta-to-patella study's "from the lowest renal
    artery origin to the knee".
    """

    name: str
    structures: tuple[str, ...]
    s_low_mm: float | None
    s_high_mm: float | None
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


def renal_origin_s_mm(labels: LabelMap, grid: Grid, aorta: str = "aorta") -> tuple[float, str] | None:
    """S coordinate (mm) of the lowest renal artery origin and which artery it is; None without
    renal artery masks. The origin is where the renal mask touches the aorta (voxels within one
    voxel diagonal of it), or its voxel nearest to the aorta when the masks do not touch.
    """
    if not labels.has(aorta):
        return None
    aorta_mask = labels.mask(aorta)
    if not aorta_mask.any():
        return None
    origins = []
    voxel_diagonal = float(np.linalg.norm(grid.spacing_mm))
    for side in ("left", "right"):
        name = f"renal_artery_{side}"
        if not labels.has(name):
            continue
        renal = labels.mask(name)
        if not renal.any():
            continue
        points = np.argwhere(renal)
        box_lo = np.maximum(points.min(axis=0) - 5, 0)
        box_hi = np.minimum(points.max(axis=0) + 6, renal.shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(box_lo, box_hi))
        local_aorta = aorta_mask[box]
        if local_aorta.any():
            distance = ndi.distance_transform_edt(~local_aorta, sampling=grid.spacing_mm)
        else:  # aorta outside the box: fall back to the distance to the aorta's centroid
            centre = np.argwhere(aorta_mask).mean(axis=0) - box_lo
            idx = np.indices(local_aorta.shape).reshape(3, -1).T
            distance = np.linalg.norm((idx - centre) * np.asarray(grid.spacing_mm), axis=1).reshape(local_aorta.shape)
        d_renal = distance[renal[box]]
        near = d_renal <= max(voxel_diagonal, d_renal.min() + 1e-9)
        origin_points = points[near] if near.any() else points[[int(np.argmin(d_renal))]]
        origins.append((float(superior_mm(grid, origin_points).mean()), name))
    return min(origins) if origins else None


def infrarenal_split(labels: LabelMap, grid: Grid, structure: str = "aorta") -> RegionSplit | None:
    """Supra- vs infrarenal aorta at the lowest renal artery origin (SCORING.md A.8); None without renals."""
    origin = renal_origin_s_mm(labels, grid, structure)
    if origin is None:
        return None
    plane, artery = origin
    return RegionSplit(structure, plane, f"{structure}_suprarenal", f"{structure}_infrarenal",
                       source=f"lowest renal artery origin ({artery})")


def renal_to_knee_range(labels: LabelMap, grid: Grid, arteries: tuple[str, ...]) -> RegionRange | None:
    """All ``arteries`` from the lowest renal artery origin down to the knee (the distal end of the
    femurs when they are segmented, else the end of the scan): the range scored by the
    aorta-to-patella study (SCORING.md A.8)."""
    origin = renal_origin_s_mm(labels, grid)
    if origin is None:
        return None
    femur_ends = [e[0] for e in (structure_extent_s_mm(labels, grid, f"femur_{side}") for side in ("left", "right"))
                  if e is not None]
    low = min(femur_ends) if femur_ends else None
    return RegionRange("renal_to_knee", tuple(arteries), low, origin[0],
                       source=f"lowest renal artery origin ({origin[1]}) to "
                              + ("the distal femur" if femur_ends else "the end of the scan"))


#: Region names the CT job accepts (``--region``).
NAMED_REGIONS = ("thoracic_abdominal", "infrarenal", "renal_to_knee")


def named_regions(names: tuple[str, ...] | list[str], labels: LabelMap, grid: Grid,
                  arteries: tuple[str, ...]) -> tuple[list[RegionSplit | RegionRange], list[str]]:
    """Resolve region names to splits/ranges; returns them and a note for each that needs a missing landmark."""
    regions: list[RegionSplit | RegionRange] = []
    missing: list[str] = []
    for name in names:
        if name == "thoracic_abdominal":
            region = thoracic_abdominal_split(labels, grid)
            need = "vertebrae_T12 or vertebrae_L1"
        elif name == "infrarenal":
            region = infrarenal_split(labels, grid)
            need = "renal_artery_left/right and aorta"
        elif name == "renal_to_knee":
            region = renal_to_knee_range(labels, grid, arteries)
            need = "renal_artery_left/right and aorta"
        else:
            raise ValueError(f"unknown region {name!r}; known: {', '.join(NAMED_REGIONS)}")
        if region is None:
            missing.append(f"region {name} not scored: it needs {need} masks")
        else:
            regions.append(region)
    return regions, missing
