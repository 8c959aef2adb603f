"""Vessel regions of interest on a cropped block (SCORING.md A.1).

Everything here works on the crop around the vessels, never on the whole volume: the distance
transforms are the costly step and their cost grows with the number of voxels they see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

#: relative tolerance on mm comparisons (spacings are floats read from headers)
TOL = 1e-9


def margin_voxels(mm: float, spacing: tuple[float, float, float]) -> tuple[int, int, int]:
    """Voxels per axis covering ``mm`` plus one voxel of safety."""
    return tuple(int(math.ceil(mm / s - TOL)) + 1 for s in spacing)  # type: ignore[return-value]


def pad_box(box: tuple[slice, ...], pad: tuple[int, ...], shape: tuple[int, ...]) -> tuple[slice, ...]:
    """A box grown by ``pad`` voxels per axis, clipped to ``shape``."""
    return tuple(slice(max(0, b.start - p), min(n, b.stop + p)) for b, p, n in zip(box, pad, shape))


def union_box(boxes: list[tuple[slice, ...]]) -> tuple[slice, ...]:
    return tuple(slice(min(b[a].start for b in boxes), max(b[a].stop for b in boxes)) for a in range(3))


def shift_box(box: tuple[slice, ...], origin: tuple[int, ...]) -> tuple[slice, ...]:
    """``box`` (full-grid indices) expressed in a crop starting at ``origin``."""
    return tuple(slice(b.start - o, b.stop - o) for b, o in zip(box, origin))


@dataclass
class Assignment:
    """Nearest undilated vessel per voxel of the crop (A.1).

    ``distance_mm``: Euclidean distance to the nearest vessel voxel (inf beyond the padded boxes);
    ``vessel``: index 1..n of that vessel in scoring order (0 = none); ties go to the lower label id
    because vessels are visited in ascending id and only a strictly smaller distance replaces.
    """

    distance_mm: np.ndarray
    vessel: np.ndarray


def assign_nearest_vessel(labels: np.ndarray, ids: list[int], boxes: list[tuple[slice, ...] | None],
                          spacing: tuple[float, float, float], reach_mm: float) -> Assignment:
    """Distance to, and index of, the nearest vessel for voxels within ``reach_mm`` of any vessel.

    ``labels`` is the crop of the label array, ``boxes`` each vessel's bounding box in crop
    coordinates (None when absent). One EDT per vessel on its own padded box, so small vessels cost
    little however large the crop is.
    """
    dist = np.full(labels.shape, np.inf, dtype=np.float32)
    owner = np.zeros(labels.shape, dtype=np.int16)
    pad = margin_voxels(reach_mm, spacing)
    for index, (label, box) in enumerate(zip(ids, boxes), start=1):
        if box is None:
            continue
        sub = pad_box(box, pad, labels.shape)
        d = ndi.distance_transform_edt(labels[sub] != label, sampling=spacing).astype(np.float32)
        better = d < dist[sub]
        dist[sub][better] = d[better]
        owner[sub][better] = index
    return Assignment(distance_mm=dist, vessel=owner)


def eroded_lumen(labels: np.ndarray, label: int, box: tuple[slice, ...], spacing: tuple[float, float, float],
                 erode_mm: float, core_fraction: float = 0.0) -> tuple[tuple[np.ndarray, ...], tuple[slice, ...]]:
    """Indices (in the box) of vessel voxels farther than ``erode_mm`` from the vessel's outside.

    Erosion by a closed ball of radius r keeps voxels whose distance to the background exceeds r
    (A.2.5 step 1). The box is padded by one voxel so the vessel's own edge is seen as background.

    ``core_fraction`` f > 0 [T] keeps only the bright central core: voxels whose distance to the
    edge is also ≥ f·(local radius), the local radius being the largest distance in the same slice.
    A mask that includes the wall (3 mm in the phantoms, common in segmenters) leaves wall and wall
    plaques in a 2 mm erosion of a small vessel; f = 0.5 removes the outer half of the radius, which
    holds the wall whatever the vessel's calibre.
    """
    sub = pad_box(box, (1, 1, 1), labels.shape)
    inside = labels[sub] == label
    d = ndi.distance_transform_edt(inside, sampling=spacing)
    keep = d > erode_mm * (1 + TOL)
    if core_fraction > 0 and keep.any():
        radius = d.reshape(d.shape[0], -1).max(axis=1)
        keep &= d >= core_fraction * radius[:, None, None] * (1 - TOL)
    return np.nonzero(keep), sub


def bone_exclusion(bone: np.ndarray, spacing: tuple[float, float, float], margin_mm: float) -> np.ndarray:
    """Voxels within ``margin_mm`` of bone (bone included) (A.1).

    The EDT runs only on the bone's bounding box grown by the margin: nothing outside it can be
    that close to bone.
    """
    if margin_mm <= 0 or not bone.any():
        return bone.copy()
    box = []
    for axis in range(3):
        hit = np.flatnonzero(bone.any(axis=tuple(a for a in range(3) if a != axis)))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    sub = pad_box(tuple(box), margin_voxels(margin_mm, spacing), bone.shape)
    out = np.zeros(bone.shape, dtype=bool)
    out[sub] = ndi.distance_transform_edt(~bone[sub], sampling=spacing) <= margin_mm * (1 + TOL)
    return out
