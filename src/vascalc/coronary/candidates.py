"""Coronary calcium candidates: thresholded voxels in the search zone, bone removed, 2-D lesions of
at least the minimum area, grouped into 3-D clusters (SCORING.md A.2–A.3, C).

All work is on the crop around the search zone. Bone (ribs, sternum, spine, costal cartilage) is
removed as whole 3-D components of above-threshold voxels that lie mostly outside the zone:
a coronary plaque sits inside the zone, a rib only grazes it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

#: relative tolerance of the inclusive minimum-area test (SCORING.md A.3)
TOL = 1e-9


@dataclass(frozen=True, eq=False)
class Candidates:
    """Candidate lesions on the crop ``box`` (full-grid slices).

    ``clusters``: int32 crop map of 3-D cluster ids 1…n (26-connected components of the calcium
    mask = the union of kept 2-D lesions); ``lesions_2d``: int32 crop map of 2-D lesion ids
    (in-plane 8- or 4-connected) of the kept voxels; ``n_bone_components``: above-threshold 3-D
    components dropped as bone; ``n_small_2d``: 2-D lesions dropped for area < min.
    """

    box: tuple[slice, slice, slice]
    clusters: np.ndarray
    lesions_2d: np.ndarray
    n: int
    threshold_hu: float
    n_bone_components: int
    n_small_2d: int


def structure_2d(connectivity: int) -> np.ndarray:
    """3×3×3 element linking only within a slice: one ``ndi.label`` call labels every 2-D lesion."""
    s = np.zeros((3, 3, 3), dtype=bool)
    s[1] = ndi.generate_binary_structure(2, 2 if connectivity == 8 else 1)
    return s


def remove_bone(above: np.ndarray, zone: np.ndarray, inside_fraction: float, max_voxels: int | None = None
                ) -> tuple[np.ndarray, int]:
    """Keep the 26-connected components of ``above`` with at least ``inside_fraction`` of their
    voxels in ``zone`` and at most ``max_voxels`` voxels (a sternum or rib lying against the heart is
    far bigger than any coronary calcification); returns (kept voxels inside the zone, number of
    components dropped)."""
    comp, n = ndi.label(above, structure=np.ones((3, 3, 3), dtype=bool))
    if n == 0:
        return np.zeros_like(above), 0
    total = np.bincount(comp.ravel(), minlength=n + 1)
    inside = np.bincount(comp[zone], minlength=n + 1)
    keep = inside >= inside_fraction * np.maximum(total, 1)
    if max_voxels is not None:
        keep &= total <= max_voxels
    keep[0] = False
    dropped = int((~keep[1:] & (inside[1:] > 0)).sum())
    return keep[comp] & zone, dropped


def find_candidates(hu: np.ndarray, zone_box: tuple[slice, slice, slice], zone: np.ndarray,
                    spacing_mm: tuple[float, float, float], threshold_hu: float, *, min_area_mm2: float = 1.0,
                    connectivity_2d: int = 8, strict: bool = False, bone_pad_mm: float = 20.0,
                    inside_fraction: float = 0.5, bone_min_mm3: float | None = 3000.0) -> Candidates:
    """Calcium candidates in ``zone`` (bool on the crop ``zone_box`` of the full grid).

    Voxels ``HU >= threshold_hu`` (``>`` when ``strict``; NaN never), bone removed by
    :func:`remove_bone` on a box padded by ``bone_pad_mm`` (so a rib's extent outside the zone is
    seen; components above ``bone_min_mm3`` are bone too), 2-D lesions with area ≥ ``min_area_mm2``
    (inclusive, A.3), then 3-D 26-connected clusters.
    """
    shape = hu.shape
    pad = [int(np.ceil(bone_pad_mm / s)) for s in spacing_mm]
    big = tuple(slice(max(0, b.start - p), min(n, b.stop + p)) for b, p, n in zip(zone_box, pad, shape))
    inner = tuple(slice(b.start - g.start, b.stop - g.start) for b, g in zip(zone_box, big))
    h = hu[big]
    with np.errstate(invalid="ignore"):
        above = (h > threshold_hu) if strict else (h >= threshold_hu)
    zone_big = np.zeros(h.shape, dtype=bool)
    zone_big[inner] = zone
    max_voxels = None if bone_min_mm3 is None else int(bone_min_mm3 / float(np.prod(spacing_mm)))
    kept, n_bone = remove_bone(above, zone_big, inside_fraction, max_voxels)
    cand = kept[inner]
    lab2, _ = ndi.label(cand, structure=structure_2d(connectivity_2d))
    area = np.bincount(lab2.ravel()) * spacing_mm[1] * spacing_mm[2]
    ok = area >= min_area_mm2 * (1 - TOL)
    ok[0] = False
    n_small = int((~ok[1:] & (area[1:] > 0)).sum())
    calcium = ok[lab2]
    clusters, n = ndi.label(calcium, structure=np.ones((3, 3, 3), dtype=bool))
    return Candidates(box=zone_box, clusters=clusters.astype(np.int32), lesions_2d=np.where(calcium, lab2, 0).astype(np.int32),
                      n=int(n), threshold_hu=float(threshold_hu), n_bone_components=n_bone, n_small_2d=n_small)
