"""Heart region of a chest CT: from a label map, TotalSegmentator, or found in the image (built-in).

The coronary arteries run in the epicardial fat on the heart surface, so the calcium search zone
is the heart region dilated by a few millimetres (:func:`search_zone`). The built-in region
starts from :func:`vascalc.anatomy.builtin.landmarks.segment_heart_region` (the soft tissue
between the lungs, in front of the spine) and keeps its soft-tissue core; when the lungs run out
of the field of view that region is cut flat at the top, and :func:`extend_cut_top` lets it follow
the heart's dome upwards.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage as ndi

from vascalc.errors import InputError, MaskError
from vascalc.imaging.labelmap import LabelMap
from vascalc.imaging.volume import Volume

#: label names that together make the heart (TotalSegmentator v2 ``heart``; v1 chambers).
HEART_NAMES = ("heart", "heart_myocardium", "heart_atrium_left", "heart_atrium_right", "heart_ventricle_left",
               "heart_ventricle_right")
#: smallest plausible heart (mL); below this the "heart" is a fragment, not a heart.
MIN_HEART_ML = 150.0


@dataclass(frozen=True, eq=False)
class HeartRegion:
    """The heart mask (bool, full grid) and how it was obtained.

    ``source``: ``labelmap`` | ``totalsegmentator`` | ``builtin``; ``volume_ml`` its volume;
    ``touches_fov``: the volume faces where it may be cut off by the field of view
    (``top``/``bottom``/``left``/…; see :func:`_fov_faces`).
    """

    mask: np.ndarray
    source: str
    volume_ml: float
    touches_fov: tuple[str, ...]
    notes: tuple[str, ...] = ()


def heart_from_labels(labels: LabelMap) -> tuple[np.ndarray, str]:
    """Union of the heart labels of a label map; a binary map (only id 1) counts as a heart mask.

    Returns (mask, note). Raises :class:`MaskError` when the map holds no heart label.
    """
    ids = [i for i, n in labels.names.items() if n in HEART_NAMES]
    if ids:
        return np.isin(labels.labels, ids), "heart label(s) " + ", ".join(labels.names[i] for i in sorted(ids))
    present = np.unique(labels.labels)
    if set(present.tolist()) <= {0, 1}:
        return labels.labels == 1, "binary mask taken as the heart"
    raise MaskError("the heart mask has no 'heart' label (nor heart chambers); give a TotalSegmentator "
                    "heart mask or a binary heart mask")


#: In-plane: a heart region this close (mm) to a side of the image may be cut off; it is the default search
#: margin (:class:`CoronaryOptions`), where the coronaries run on the heart's surface. The built-in region
#: stays 5–9 mm off an edge that cuts the heart (its body mask is eroded), so "touching" would miss it.
FOV_SIDE_MARGIN_MM = 10.0
#: Top/bottom: the region is cut there when its section on the end slice is at least this fraction of its
#: largest axial section. A region that reaches the top slice only through the great vessels above the heart
#: (a scan starting below the lung apices) has 0.17–0.26 there; a heart cut by ≥ 2 % has 0.40 or more.
FOV_END_SECTION_FRACTION = 0.35


def _face_names(grid, axis: int) -> tuple[str, str]:
    """Anatomical names of the low and high face of array ``axis`` (0 = z, 1 = y, 2 = x) of ``grid``."""
    column = np.asarray(grid.direction_matrix)[:, 2 - axis]
    dominant = int(np.argmax(np.abs(column)))
    names = {0: ("right", "left"), 1: ("anterior", "posterior"), 2: ("bottom", "top")}[dominant]
    return names if column[dominant] > 0 else names[::-1]


def body_cut_faces(hu: np.ndarray, grid, body_hu: float = -400.0, min_fraction: float = 0.2) -> tuple[str, ...]:
    """In-plane faces of the image where the body runs out of the field of view: at least ``min_fraction``
    of that face's edge pixels read tissue (> ``body_hu``). A heart that is not found there may be cut off."""
    faces = []
    for axis in (1, 2):
        lo, hi = _face_names(grid, axis)
        for index, name in ((0, lo), (-1, hi)):
            edge = np.take(hu, index, axis=axis)
            if np.count_nonzero(edge > body_hu) >= min_fraction * edge.size:
                faces.append(name)
    return tuple(faces)


def _fov_faces(mask: np.ndarray, grid) -> tuple[str, ...]:
    """Volume faces where the heart region may be cut off, named anatomically from the grid direction.

    An in-plane face counts when the region comes within :data:`FOV_SIDE_MARGIN_MM` of it; the top or
    bottom face when the region's section on that end slice is ≥ :data:`FOV_END_SECTION_FRACTION` of
    its largest axial section (a thin stalk of great vessels reaching the top is not a cut heart).
    """
    faces = []
    for axis in (0, 1, 2):
        sections = mask.sum(axis=tuple(a for a in (0, 1, 2) if a != axis))
        filled = np.flatnonzero(sections)
        if filled.size == 0:
            continue
        lo_name, hi_name = _face_names(grid, axis)
        if {lo_name, hi_name} == {"bottom", "top"}:
            lo = sections[0] >= FOV_END_SECTION_FRACTION * sections.max()
            hi = sections[-1] >= FOV_END_SECTION_FRACTION * sections.max()
        else:
            step = float(grid.spacing_mm[axis])
            lo = filled[0] * step < FOV_SIDE_MARGIN_MM
            hi = (sections.size - 1 - filled[-1]) * step < FOV_SIDE_MARGIN_MM
        faces += [name for name, cut in ((lo_name, lo), (hi_name, hi)) if cut]
    return tuple(faces)


def extend_cut_top(region: np.ndarray, hu: np.ndarray, spacing_mm: tuple[float, float, float], up: int,
                   max_mm: float = 30.0) -> np.ndarray:
    """Let a region cut flat at its top slice grow upwards through soft tissue (the heart's dome).

    ``up`` is +1 when the superior direction is increasing z index, −1 otherwise. Each new slice
    is the previous one eroded by 1.5 mm in-plane and kept where HU is −50…400 (myocardium,
    blood, root; not fat or lung); growth stops when a slice falls below 15 % of the region's
    largest slice area or after ``max_mm``.
    """
    areas = region.sum(axis=(1, 2))
    zs = np.flatnonzero(areas)
    if zs.size == 0:
        return region
    top = int(zs[-1] if up > 0 else zs[0])
    largest = float(areas.max())
    if areas[top] < 0.4 * largest:
        return region  # tapers already: not a flat cut
    out = region.copy()
    erode_px = max(1, int(round(1.5 / min(spacing_mm[1], spacing_mm[2]))))
    prev = region[top]
    for k in range(1, int(max_mm / spacing_mm[0]) + 1):
        z = top + up * k
        if not 0 <= z < region.shape[0]:
            break
        sm = ndi.uniform_filter(hu[z].astype(np.float32), size=3)
        nxt = ndi.binary_erosion(prev, iterations=erode_px) & (sm > -50.0) & (sm < 400.0)
        nxt = ndi.binary_opening(nxt, iterations=2)
        if nxt.sum() < 0.15 * largest:
            break
        out[z] = nxt
        prev = nxt
    return out


#: radius (mm) of the opening that keeps the heart and drops thinner soft tissue touching it
#: (great vessels, mediastinal strips, chest wall): the heart's semi-axes are 40–60 mm
OPENING_MM = 15.0
#: the built-in heart is found on voxels of at least this size (mm), an integer subsampling
WORK_MM = 1.5


def _opening_mm(mask: np.ndarray, spacing_mm: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    """Morphological opening by a ball of ``radius_mm`` (exact, two EDTs), restricted to ``mask``."""
    inner = ndi.distance_transform_edt(mask, sampling=spacing_mm) >= radius_mm
    if not inner.any():
        return mask
    return mask & (ndi.distance_transform_edt(~inner, sampling=spacing_mm) <= radius_mm + 1e-6)


def builtin_heart(volume: Volume) -> np.ndarray:
    """Heart mask found in the image, model-free (bool, full grid).

    The soft-tissue core (smoothed HU −50…400) of the built-in heart region, opened by a 15 mm ball
    (:data:`OPENING_MM`), largest component, holes filled per slice; on voxels subsampled to about
    :data:`WORK_MM`. Raises :class:`InputError` when no lungs are seen (not a chest CT) and
    :class:`MaskError` when no heart-sized soft tissue lies between them.
    """
    from vascalc.anatomy.builtin.landmarks import segment_heart_region

    region = segment_heart_region(volume)
    if region is None:
        raise InputError("no lungs found: this does not look like a chest CT (coronary scoring needs the heart "
                         "between the lungs)")
    if not region.any():
        raise MaskError("no heart found between the lungs; give a heart mask with --heart")
    box = ndi.find_objects(region.astype(np.uint8))[0]
    pad = tuple(slice(max(0, s.start - 12), min(n, s.stop + 12)) for s, n in zip(box, region.shape))
    spacing = tuple(float(s) for s in volume.grid.spacing_mm)
    hu = volume.hu[pad]
    reg = region[pad]
    up = 1 if float(volume.grid.direction_matrix[2, 2]) >= 0 else -1
    reg = extend_cut_top(reg, hu, spacing, up)
    # work on voxels of at least ~1.5 mm: the heart is 100 mm across, and thin-slice, fine-pixel
    # series would otherwise spend seconds on the morphology below
    f = tuple(max(1, int(np.floor(WORK_MM / s))) for s in spacing)
    full_shape = hu.shape
    if f != (1, 1, 1):
        hu = ndi.uniform_filter(hu.astype(np.float32), size=f)[::f[0], ::f[1], ::f[2]]
        reg = reg[::f[0], ::f[1], ::f[2]]
        spacing = tuple(s * k for s, k in zip(spacing, f))
    smooth = ndi.uniform_filter(hu.astype(np.float32), size=(1, 3, 3))
    core = reg & (smooth > -50.0) & (smooth < 400.0)
    core = ndi.binary_opening(core, structure=ndi.generate_binary_structure(3, 1), iterations=2)
    # calcium inside the heart (valves, annulus) is above the soft-tissue range: fill it in first, or
    # the opening would carve a cavity around it and put it on the "surface"
    core = np.stack([ndi.binary_fill_holes(s) for s in core])
    core = _opening_mm(core, spacing, OPENING_MM)
    lab, n = ndi.label(core)
    if n == 0:
        raise MaskError("no heart found between the lungs; give a heart mask with --heart")
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    core = lab == int(np.argmax(sizes))
    core = np.stack([ndi.binary_fill_holes(s) for s in core])  # per slice: loops over slices only
    if f != (1, 1, 1):
        for axis, k in enumerate(f):
            core = np.repeat(core, k, axis=axis)
        core = core[:full_shape[0], :full_shape[1], :full_shape[2]]
        if core.shape != full_shape:  # a remainder the strides did not cover: extend the last plane
            core = np.pad(core, [(0, n - c) for n, c in zip(full_shape, core.shape)], mode="edge")
    out = np.zeros(volume.shape, dtype=bool)
    out[pad] = core
    return out


def find_heart(volume: Volume, heart: LabelMap | np.ndarray | None = None, segmenter: str = "auto") -> HeartRegion:
    """The heart region: the given mask, else TotalSegmentator (``segmenter`` auto/totalsegmentator
    when installed), else built-in. Raises :class:`MaskError` when the heart is empty or too small
    (< :data:`MIN_HEART_ML` mL) and :class:`InputError` when the scan shows no lungs.
    """
    notes: list[str] = []
    if heart is not None:
        if isinstance(heart, LabelMap):
            mask, note = heart_from_labels(heart)
            notes.append(note)
        else:
            mask = np.asarray(heart, dtype=bool)
            if mask.shape != volume.shape:
                raise MaskError(f"heart mask {mask.shape} does not match the CT {volume.shape}")
        source = "labelmap"
    else:
        backend = segmenter
        if backend == "auto":
            from vascalc.anatomy.totalsegmentator import totalsegmentator_available

            backend = "totalsegmentator" if totalsegmentator_available() else "builtin"
        if backend == "totalsegmentator":
            from vascalc.anatomy.totalsegmentator import run_totalsegmentator

            mask, note = heart_from_labels(run_totalsegmentator(volume, ["heart"]))
            source = "totalsegmentator"
        elif backend == "builtin":
            mask = builtin_heart(volume)
            source = "builtin"
        else:
            raise InputError(f"unknown heart segmenter {segmenter!r}; choose auto, builtin or totalsegmentator")
    volume_ml = float(mask.sum() * volume.grid.voxel_volume_mm3 / 1000.0)
    if volume_ml == 0:
        raise MaskError("no heart found: the heart mask is empty (is this a chest CT?)")
    if volume_ml < MIN_HEART_ML:
        faces = _fov_faces(mask, volume.grid)
        cut = (f" and reaches the edge of the field of view ({', '.join(faces)}): the heart is cut off; reconstruct "
               "with a field of view that holds the whole heart") if faces else ""
        body = body_cut_faces(volume.hu, volume.grid) if not faces else ()
        if body:
            cut = (f"; the body runs out of the field of view ({', '.join(body)}), so the heart may lie partly "
                   "outside it: reconstruct with a field of view that holds the whole heart")
        raise MaskError(f"no heart found: the heart region is only {volume_ml:.0f} mL (< {MIN_HEART_ML:g} mL){cut}")
    return HeartRegion(mask=mask, source=source, volume_ml=volume_ml, touches_fov=_fov_faces(mask, volume.grid),
                       notes=tuple(notes))


#: the heart's centre this far (mm) to the patient's RIGHT of the body's centre reads as a left-right flip
HEART_RIGHT_WARNING_MM = 5.0


def heart_left_of_body_mm(hu: np.ndarray, heart: np.ndarray, grid, body_hu: float = -400.0) -> float | None:
    """How far (mm) the heart's centroid lies to the patient's left of the body's centroid, both taken
    on the heart's slices (LPS x; negative = to the right). The heart sits left of the midline in
    normal anatomy (levocardia); a clearly negative value means a left-right flipped image (a header
    that lost the flip) or dextrocardia, where the artery assignment, which assumes normal anatomy,
    does not hold. ``None`` when the heart mask is empty.
    """
    if not heart.any():
        return None
    zs = np.flatnonzero(heart.any(axis=(1, 2)))
    body = hu[zs[0]:zs[-1] + 1] > body_hu
    # the centroid of indices maps to the centroid in mm: the index → LPS map is affine
    heart_c = np.array([c.mean() for c in np.nonzero(heart)])
    body_c = np.array([c.mean() for c in np.nonzero(body)]) + np.array([zs[0], 0, 0])
    return float(grid.index_to_lps(heart_c)[0] - grid.index_to_lps(body_c)[0])


def search_zone(heart: np.ndarray, spacing_mm: tuple[float, float, float], margin_mm: float,
                box: tuple[slice, ...]) -> np.ndarray:
    """Heart mask dilated by ``margin_mm`` (exact EDT in mm) on the crop ``box``."""
    sub = heart[box]
    return ndi.distance_transform_edt(~sub, sampling=spacing_mm) <= margin_mm + 1e-6


def blood_pool_stats_hu(hu: np.ndarray, heart: np.ndarray) -> tuple[float, float] | None:
    """Median HU of the heart's centre: the middle third (per axis) of the heart mask's bounding box,
    voxels above −50 HU (no fat, no lung). That is blood pool and myocardium whatever the mask holds
    (a built-in region may leave a contrast-filled blood pool out). Non-contrast blood reads 30–60
    HU; contrast lifts the centre above 150 HU [T, the contrast guard of SCORING.md A.2.1 applied to
    the heart]. Returns (median, robust SD = 1.4826·MAD, the noise level); ``None`` when the heart is
    empty."""
    box = ndi.find_objects(heart.astype(np.uint8))
    if not box or box[0] is None:
        return None
    centre = tuple(slice(b.start + (b.stop - b.start) // 3, b.stop - (b.stop - b.start) // 3) if b.stop - b.start >= 3
                   else b for b in box[0])
    values = np.asarray(hu[centre], dtype=np.float64).ravel()
    values = values[np.isfinite(values) & (values > -50.0)]
    if not values.size:
        return None
    median = float(np.median(values))
    return median, float(1.4826 * np.median(np.abs(values - median)))


def heart_crop_box(heart_mask: np.ndarray, spacing_mm: Sequence[float], margin_mm: float = 10.0
                   ) -> tuple[slice, slice, slice]:
    """The crop every coronary stage works in: the heart's bounding box grown by ``margin_mm``
    (the search margin) + 2 mm, clipped to the volume."""
    found = ndi.find_objects(heart_mask.astype(np.uint8))
    if not found or found[0] is None:
        raise InputError("the heart mask is empty; no heart region to crop")
    pad = [int(np.ceil((margin_mm + 2.0) / s)) for s in spacing_mm]
    return tuple(slice(max(0, b.start - p), min(n, b.stop + p))
                 for b, p, n in zip(found[0], pad, heart_mask.shape))
