"""Model-free landmarks from a CT: body, skeleton with labelled vertebrae, pelvis, femurs, heart region.

Everything runs on a copy of the volume in a *canonical orientation* (axis 0 superior → inferior,
axis 1 anterior → posterior, axis 2 patient right → left, read from the grid's direction, so
head-first and feet-first storage give the same labels), block-averaged to about 3 mm; labels go
back to the input grid by nearest neighbour, and at the edge of a bone only input voxels above
100 HU keep their bone label.

Steps (thresholds are the module constants below):

1. body: the largest connected component above −300 HU after a small in-plane opening (which
   detaches the table), holes filled slice by slice;
2. bone: above 150 HU inside the body, plus 100–150 HU voxels touching it (trabecular bone next to
   the cortex); a region enclosed by bone in an axial slice (after closing gaps of the cortex) is
   filled when its mean is above 75 HU (the marrow of an osteoporotic body is 60–150 HU) or when it
   lies off the midline (fatty marrow of the femoral shaft), never the midline spinal canal (CSF
   and cord, 0–40 HU) nor a cavity over 25 cm²; components under 1.5 cm³ are not skeleton (those
   more than 60 mm off the midline are dropped before the cortex closing too, so that vessel calcium
   a few mm from the pelvic bone never closes a "marrow" ring with it). Thin
   bright structures just in front of the vertebral bodies (aortic wall calcium) are opened away.
   On a contrast scan (tagged, or ≥ 300 cm³ of even 150–700 HU tissue) even regions (100–700 HU)
   brighter than the median of what surrounds them and either wide (≥ 12 mm: aorta, kidneys) or
   tubes (long along z: aorta, iliac arteries) are lumen or organ; they, their rim and their wall
   (6 mm, plaques included) are excluded. Bone must lie within a voxel of cortex (> 450 HU) except
   behind the vertebral bodies (the arch, ~300 HU at 3 mm, where no large vessel runs); hole
   filling skips regions as bright as their rim, and tube-shaped components of lumen HU (an iliac
   segment) are dropped;
3. spine column: the bone of a ±15 mm strip about the spine's midline, behind the body's centre;
   its anterior edge traces the front of the vertebral bodies;
4. discs: minima of the bone fraction in a box 3–18 mm behind that edge (bodies are bone, discs are
   not), found with :func:`scipy.signal.find_peaks`; dips leaving implausibly short vertebrae, or
   next to metal (whose streaks fake dips), are dropped;
5. levels: L5/S1 is the lowest disc with the sacral alae reaching the ilia (bone ≥ 200 mm wide)
   below it and not above it; vertebrae are counted up from it (L5, L4 … T12, T11 …). Without a
   sacrum in view, T12 is the lowest vertebra with separate rib bone beside it above a rib-free
   one, and every level is flagged uncertain; with neither, no level is given. Below L5/S1 every
   region the sacral cortex encloses is filled whatever its HU (fatty sacral marrow is 0–40 HU);
6. markers — each vertebra's midline column between two disc planes tilted with the spine, the
   sacrum below L5/S1, each femoral head (the thickest lateral bone) and shaft, each ilium — grow
   over the whole bone mask by a watershed of the smoothed negative HU, so that borders fall on
   joint spaces (facets, sacro-iliac and hip joints); bone no marker reaches is ``other_bone``.

Names are TotalSegmentator's (``vertebrae_L1``, ``sacrum`` — S1 included —, ``hip_left``,
``femur_left``); ``body`` is the patient's non-bone tissue. The level rule follows the usual
radiological convention: count up from the lumbosacral junction, cross-check with the last
rib-bearing vertebra (T12).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi
from scipy.signal import find_peaks

from vascalc.errors import GeometryError
from vascalc.imaging.grid import Grid
from vascalc.imaging.labelmap import LabelMap
from vascalc.imaging.volume import Volume

#: Working voxel size (mm): big enough to be fast, small enough to see an 8-mm disc.
WORK_SPACING_MM = 3.0
BODY_THRESHOLD_HU = -300.0
BONE_THRESHOLD_HU = 150.0
BONE_EDGE_HU = 100.0
#: Holes in bone with a mean above this are trabecular bone; the spinal canal is 0–40 HU.
HOLE_FILL_HU = 75.0
#: Larger enclosed regions are cavities (the pelvic ring), not marrow.
MAX_HOLE_AREA_MM2 = 2500.0
#: On a contrast scan an enclosed region brighter than this is a lumen (even a calcified one).
CONTRAST_LUMEN_MIN_HU = 260.0
#: On a contrast scan bone must lie within a voxel of a voxel this bright (cortex at 3 mm).
CONTRAST_CORTEX_HU = 450.0
#: On a contrast scan an even, bright-centred region at least this wide in-plane is a lumen or an
#: enhancing organ; the thin posterior arch of a vertebra at 3 mm is as even and bright, but narrower.
LUMEN_MIN_WIDTH_MM = 12.0
#: … or a tube: an even region (or a bone-like component) at least this many times longer along z
#: than the side of its mean cross-section (aorta, iliac arteries), unlike a vertebra or its arch.
TUBE_ELONGATION = 1.5
#: A component with a mean cross-section wider than this (side of a square, mm) is not a vessel
#: segment (the femoral shaft is a long tube too, ~25 mm wide).
VESSEL_MAX_SIDE_MM = 15.0
#: A separate component this small (mm³), that thin and of lumen HU is a vessel stub on a contrast scan.
VESSEL_STUB_MM3 = 5000.0
#: A contrast lumen may be as dark as this (HU) when the bolus is late or the wall is calcified.
LUMEN_CORE_MIN_HU = 100.0
#: On a contrast scan, bone farther than this (mm) behind the body's centre needs no cortex nearby:
#: the vertebral arch lies there (300 HU at 3 mm), large vessels do not.
POSTERIOR_ARCH_MM = 25.0
#: On a contrast scan every voxel this close (in-plane voxels, ~6 mm) to a lumen core is vessel wall.
LUMEN_WALL_VOXELS = 2
#: The sacrum (alae included) lies within this of the midline (mm); its enclosed marrow is filled
#: whatever its HU up to this area (mm²) per slice; the pelvic cavity is larger. Beyond it, a bone
#: fragment under :data:`MIN_BONE_VOLUME_MM3` closes no cortex ring (:func:`_drop_fragments`).
SACRUM_HALF_WIDTH_MM = 60.0
MAX_SACRAL_HOLE_AREA_MM2 = 2500.0
#: Bone components smaller than this are not skeleton (vessel calcium, calcified nodes).
MIN_BONE_VOLUME_MM3 = 1500.0

VERTEBRA_ORDER = tuple([f"vertebrae_C{i}" for i in range(1, 8)] + [f"vertebrae_T{i}" for i in range(1, 13)]
                       + [f"vertebrae_L{i}" for i in range(1, 6)])
BONE_NAMES = (*VERTEBRA_ORDER, "sacrum", "hip_left", "hip_right", "femur_left", "femur_right", "other_bone")


@dataclass(frozen=True)
class VertebraLevel:
    """One labelled vertebra: its name, z-range in the input array, and how sure the level is.

    ``z_top_index``/``z_bottom_index`` are slice indices of the input volume (inclusive, whichever
    storage order); ``centroid_lps_mm`` is the centroid of its mask in LPS mm; ``confidence`` in
    [0, 1]; ``complete`` is False when the field of view cuts the vertebra.
    """

    name: str
    z_top_index: int
    z_bottom_index: int
    centroid_lps_mm: tuple[float, float, float]
    volume_mm3: float
    confidence: float
    complete: bool


@dataclass(frozen=True, eq=False)
class LandmarkResult:
    """Skeleton labels on the input grid, with how the vertebral levels were identified.

    ``labels``: ``vertebrae_*``, ``sacrum``, ``hip_left/right``, ``femur_left/right``,
    ``other_bone`` (every other bone voxel: ribs, sternum …) and ``body``; its
    ``uncertain_slices`` lists, for each uncertain vertebra, the input slices (axis 0) it covers.
    ``vertebrae``: the labelled vertebrae cranial → caudal. ``level_anchor``: ``"sacrum"``,
    ``"ribs"`` or ``"none"``. ``uncertain``: names whose level (or presence) is doubtful.
    ``notes``: plain sentences on how the levels were found. ``runtime_s``: wall time.
    ``confidence``: per vertebra name, in [0, 1]. ``body``: the whole body mask (bool, bones
    included; the ``body`` label holds only its non-bone part since labels are exclusive).
    """

    labels: LabelMap
    vertebrae: tuple[VertebraLevel, ...]
    level_anchor: str
    uncertain: tuple[str, ...]
    notes: tuple[str, ...]
    runtime_s: float
    confidence: dict[str, float] = field(default_factory=dict)
    body: np.ndarray | None = None

    def bone_mask(self) -> np.ndarray:
        """Every bone voxel (all labels except ``body``), boolean on the input grid."""
        ids = [i for i, n in self.labels.names.items() if n != "body"]
        return np.isin(self.labels.labels, ids)


# ----------------------------------------------------------------------------------------------
# orientation and resampling


@dataclass(frozen=True)
class _Frame:
    """How to bring an input array to canonical (S→I, A→P, R→L) order and back."""

    perm: tuple[int, int, int]
    flips: tuple[bool, bool, bool]
    spacing_mm: tuple[float, float, float]  # canonical order, input resolution

    def to_canonical(self, a: np.ndarray) -> np.ndarray:
        a = np.transpose(a, self.perm)
        return a[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]

    def from_canonical(self, a: np.ndarray) -> np.ndarray:
        a = a[tuple(slice(None, None, -1) if f else slice(None) for f in self.flips)]
        return np.transpose(a, np.argsort(self.perm))


def canonical_frame(grid: Grid) -> _Frame:
    """Permutation and flips taking the (z, y, x) array of ``grid`` to S→I, A→P, R→L order.

    Uses the dominant LPS component of each index axis; raises :class:`GeometryError` for an
    oblique grid where two axes share one dominant direction.
    """
    d = grid.direction_matrix  # columns: x, y, z index axes
    # array axis a (z, y, x) is index column 2 - a; LPS component 2 (S) → canonical 0 wanting −S,
    # component 1 (P) → canonical 1 wanting +P, component 0 (L) → canonical 2 wanting +L
    target_of_component = {2: 0, 1: 1, 0: 2}
    wanted_sign = {2: -1.0, 1: 1.0, 0: 1.0}
    perm = [-1, -1, -1]
    flips = [False, False, False]
    for a in range(3):
        col = d[:, 2 - a]
        comp = int(np.argmax(np.abs(col)))
        t = target_of_component[comp]
        if perm[t] != -1:
            raise GeometryError("the image axes are too oblique to tell superior, anterior and left apart")
        perm[t] = a
        flips[t] = bool(np.sign(col[comp]) != wanted_sign[comp])
    spacing = tuple(float(grid.spacing_mm[a]) for a in perm)
    return _Frame(tuple(perm), tuple(flips), spacing)  # type: ignore[arg-type]


def _factors(spacing_mm: tuple[float, ...]) -> tuple[int, int, int]:
    """Block sizes that bring each axis to at most ~:data:`WORK_SPACING_MM` (10 % slack).

    Never coarser: the thresholds (one-voxel openings, 12-mm lumen width, 3–18 mm disc box) are
    tuned for ~3 mm, and rounding a 2-mm grid up to 4 mm loses the T12/L1 disc and the sacrum.
    """
    return tuple(max(1, int(WORK_SPACING_MM * 1.1 / s)) for s in spacing_mm)  # type: ignore[return-value]


def _block_mean(a: np.ndarray, f: tuple[int, int, int]) -> np.ndarray:
    """Mean over non-overlapping ``f`` blocks (edge-padded to a multiple of ``f``)."""
    if f == (1, 1, 1):
        return a.astype(np.float32)
    pad = [(0, (-n) % k) for n, k in zip(a.shape, f)]
    a = np.pad(a.astype(np.float32), pad, mode="edge")
    s = a.shape
    return a.reshape(s[0] // f[0], f[0], s[1] // f[1], f[1], s[2] // f[2], f[2]).mean(axis=(1, 3, 5))


def _upsample(labels: np.ndarray, f: tuple[int, int, int], shape: tuple[int, int, int]) -> np.ndarray:
    """Nearest-neighbour inverse of :func:`_block_mean` for a label array."""
    out = labels
    for axis, k in enumerate(f):
        if k > 1:
            out = np.repeat(out, k, axis=axis)
    return out[: shape[0], : shape[1], : shape[2]]


# ----------------------------------------------------------------------------------------------
# masks on the working grid (canonical order)


_PLANE = np.zeros((3, 3, 3), bool)
_PLANE[1] = ndi.generate_binary_structure(2, 1)
_PLANE8 = np.zeros((3, 3, 3), bool)
_PLANE8[1] = True


def _fill_holes_2d(mask: np.ndarray) -> np.ndarray:
    """Fill holes slice by slice (axis 0); empty slices padded so the end slices are filled too."""
    padded = np.pad(mask, ((1, 1), (0, 0), (0, 0)))
    return ndi.binary_fill_holes(padded, structure=_PLANE)[1:-1]


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndi.label(mask)
    if n == 0:
        return mask.copy()
    sizes = np.bincount(lab.ravel())
    sizes[0] = 0
    return lab == int(np.argmax(sizes))


def _body_work(h: np.ndarray) -> np.ndarray:
    m = h > BODY_THRESHOLD_HU
    # the in-plane opening cuts the thin contacts between the patient and the table / blanket
    m = ndi.binary_opening(m, structure=_PLANE8, iterations=1)
    return _fill_holes_2d(_largest_component(m))


def _close_at_fov_edge(body: np.ndarray, h: np.ndarray) -> np.ndarray:
    """``body`` with the holes that a field of view cutting the body opens filled, slice by slice.

    A lung cut by a small (cardiac) field of view touches the image edge, so a plain hole filling
    leaves it outside the body. The image is framed by its own edge pixels where they are body or
    aerated lung (> −950 HU, the lung test of :func:`segment_heart_region`); outside air (≈ −1000 HU)
    at the edge leaves the frame open, so the air around a patient inside the field stays outside. The
    filling runs on the unopened tissue: an edge that cuts the chest wall obliquely leaves it too thin
    for the body's opening, and the lungs would leak into the air at the image corners.
    """
    framed = np.pad(body | (h > BODY_THRESHOLD_HU), ((0, 0), (1, 1), (1, 1)))
    closed = body | (h > -950.0)
    framed[:, 0, 1:-1], framed[:, -1, 1:-1] = closed[:, 0, :], closed[:, -1, :]
    framed[:, 1:-1, 0], framed[:, 1:-1, -1] = closed[:, :, 0], closed[:, :, -1]
    return _fill_holes_2d(framed)[:, 1:-1, 1:-1]


def _midline_x(body: np.ndarray) -> np.ndarray:
    """Left-right centre of the body per slice (index units, smoothed over z)."""
    nz, _, nx = body.shape
    cnt = body.sum(axis=(1, 2)).astype(float)
    xs = (body.sum(axis=1) * np.arange(nx)).sum(axis=1) / np.maximum(cnt, 1)
    ok = cnt > 0
    if not ok.any():
        return np.full(nz, nx / 2.0)
    xs = np.interp(np.arange(nz), np.flatnonzero(ok), xs[ok])
    return ndi.median_filter(xs, size=7, mode="nearest")


def _homogeneous_bright(h: np.ndarray, low_hu: float = BONE_THRESHOLD_HU) -> np.ndarray:
    """Voxels of ``low_hu``–700 HU whose 3×3×3 neighbourhood varies by < 40 HU (SD): contrast-filled
    lumen and enhancing organs. Bone at 3 mm mixes cortex and marrow and is rarely that even."""
    m = ndi.uniform_filter(h, 3)
    sd = np.sqrt(np.maximum(ndi.uniform_filter(h * h, 3) - m * m, 0.0))
    return (sd < 40.0) & (h > low_hu) & (h < 700.0)


def _contrast_lumen(h: np.ndarray, spacing: tuple[float, float, float],
                    arch_zone: np.ndarray | None = None) -> np.ndarray:
    """Contrast-filled lumen and enhancing organs, with their wall and partial-volume rim (bool).

    Both they and trabecular bone are even regions of 100–700 HU; a lumen (or organ) is brighter
    than what surrounds it (fat, muscle), marrow is darker than its cortex. Each even region is
    compared with the median of a 2-voxel shell around it (the median, so that a calcified wall
    ring does not hide the lumen it encloses). A bright-centred region is a lumen or an organ when
    it is also wide (in-plane core ≥ :data:`LUMEN_MIN_WIDTH_MM`: aorta, kidneys, liver) or a tube
    (≥ :data:`TUBE_ELONGATION` × longer along z than wide: aorta, iliac arteries); the thin,
    short, partial-volumed arch of a vertebra is neither. Returned with its wall (every voxel
    within :data:`LUMEN_WALL_VOXELS` in-plane, plaques included) and its rim (two voxels, below
    600 HU, sparing the cortex).

    ``arch_zone`` (bool, optional): where no large vessel runs (behind the vertebral bodies, near
    the midline). A region whose centroid lies there is not a lumen: on a grid finer than ~3 mm
    the pedicles and laminae have an even core of their own, 20–25 mm tall and ~11 mm wide, which
    the tube test would otherwise take for a vessel segment.
    """
    cores = _homogeneous_bright(h, LUMEN_CORE_MIN_HU)
    lab, n = ndi.label(cores)
    if n == 0:
        return cores
    idx = np.arange(1, n + 1)
    core_hu = np.asarray(ndi.mean(h, lab, idx))
    grown = ndi.grey_dilation(lab, footprint=np.ones((5, 5, 5), bool))
    shell = np.where(lab == 0, grown, 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        # the median: a calcified wall ring (> 500 HU) must not make a lumen look darker than its shell
        # (of the shell voxels unlike the core: more of the same lumen is not what surrounds it)
        shell = np.where(np.abs(h - np.concatenate([[0.0], core_hu])[shell]) >= 60.0, shell, 0)
        shell_hu = np.nan_to_num(np.asarray(ndi.median(h, shell, idx), dtype=float), nan=1e4)
    # in-plane half-width (voxels): z neighbours are put far away so the distance is per slice
    half = ndi.distance_transform_edt(np.pad(cores, ((0, 0), (1, 1), (1, 1))), sampling=(1e3, 1.0, 1.0))[:, 1:-1, 1:-1]
    width_vox = 2.0 * np.asarray(ndi.maximum(half, lab, idx), dtype=float) - 1.0
    # a vessel is a tube: long along z for its cross-section (aorta, iliacs), unlike a vertebral arch
    count = np.bincount(lab.ravel(), minlength=n + 1)[1:].astype(float)
    z_slices = np.asarray([sl[0].stop - sl[0].start for sl in ndi.find_objects(lab)], dtype=float)
    side_mm = np.sqrt(count / z_slices * spacing[1] * spacing[2])
    tube = (z_slices * spacing[0] >= TUBE_ELONGATION * side_mm) & (width_vox >= 2.0)
    thick = width_vox * float(np.sqrt(spacing[1] * spacing[2])) >= LUMEN_MIN_WIDTH_MM
    vessel = (core_hu - shell_hu > 50.0) & (thick | tube)
    if arch_zone is not None:
        com = np.asarray(ndi.center_of_mass(cores, lab, idx)).reshape(-1, 3).round().astype(int)
        com = np.clip(com, 0, np.asarray(h.shape) - 1)
        vessel &= ~arch_zone[com[:, 0], com[:, 1], com[:, 2]]
    lumen = np.isin(lab, idx[vessel])
    rim = ndi.binary_dilation(lumen, structure=ndi.generate_binary_structure(3, 1), iterations=2)
    # the wall, plaques included (a plaque must never be bone): the core is ~1 voxel inside the lumen
    wall = ndi.binary_dilation(lumen, structure=_PLANE8, iterations=LUMEN_WALL_VOXELS)
    return lumen | (rim & (h < 600.0)) | wall


def _is_contrast(volume: Volume, h: np.ndarray, body: np.ndarray, sp: tuple[float, float, float]) -> bool:
    """Contrast-enhanced when tagged so, or when ≥ 300 cm³ of the body is homogeneous and bright
    more than 10 mm from any cortex (> :data:`CONTRAST_CORTEX_HU`).

    Even marrow (phantoms, young patients) is as homogeneous as a lumen but lies within ~10 mm of
    its cortex; without that margin the femurs and pelvis of a knee-length non-contrast scan alone
    reach 300 cm³ (430 cm³ on the 2-mm legs phantom, 130 cm³ beyond the margin; liver, kidneys and
    aorta of a contrast scan stay above 990 cm³).
    """
    if volume.info.contrast_agent:
        return True
    even = _homogeneous_bright(h) & body
    if float(even.sum() * np.prod(sp)) < 300_000.0:
        return False
    far = ndi.distance_transform_edt(h <= CONTRAST_CORTEX_HU, sampling=sp) > 10.0
    return float((even & far).sum() * np.prod(sp)) >= 300_000.0


def _bone_work(h: np.ndarray, body: np.ndarray, xc: np.ndarray, spacing: tuple[float, float, float],
               contrast: bool = False) -> np.ndarray:
    raw = (h > BONE_THRESHOLD_HU) & body
    even = np.zeros_like(raw)
    if contrast:
        # behind the vertebral bodies (the arch, partial-volumed to 300 HU at 3 mm) no large
        # vessel runs: there the cortex rule does not apply, and no even region is a lumen
        _, ny, nx = h.shape
        yb = _per_slice_centroid(body, 1)
        behind = (np.arange(ny)[None, :, None] - yb[:, None, None]) * spacing[1] >= POSTERIOR_ARCH_MM
        mid = (np.abs(np.arange(nx)[None, :] - xc[:, None]) * spacing[2] <= 50.0)[:, None, :]
        even = _contrast_lumen(h, spacing, behind & mid)
        # a small enhanced artery has no even core at 3 mm: bone must also lie near cortex
        near_cortex = ndi.binary_dilation(h > CONTRAST_CORTEX_HU, structure=ndi.generate_binary_structure(3, 1),
                                          iterations=1)
        raw &= near_cortex | (behind & mid)
    raw &= ~even
    # trabecular bone next to the cortex is often 100–150 HU: take it when it touches the cortex
    raw |= (h > BONE_EDGE_HU) & body & ndi.binary_dilation(raw, structure=_PLANE8) & ~even
    raw = _drop_fragments(raw, xc, spacing)
    # an osteoporotic cortex dips below threshold in places: close the ring before looking for holes
    closed = ndi.binary_closing(np.pad(raw, ((0, 0), (4, 4), (4, 4))), structure=_PLANE8, iterations=2)[:, 4:-4, 4:-4]
    holes = _fill_holes_2d(closed | raw) & ~raw
    lab, n = ndi.label(holes, structure=_PLANE)
    if n:
        idx = np.arange(1, n + 1)
        mean_hu = ndi.mean(h, lab, idx)
        area_mm2 = ndi.sum_labels(holes, lab, idx) * spacing[1] * spacing[2]
        com = np.asarray(ndi.center_of_mass(holes, lab, idx)).reshape(-1, 3)
        off_mid = np.abs(com[:, 2] - xc[np.clip(com[:, 0].round().astype(int), 0, len(xc) - 1)]) * spacing[2]
        keep = ((mean_hu > HOLE_FILL_HU) & (area_mm2 < MAX_HOLE_AREA_MM2)) | ((off_mid > 25.0) & (area_mm2 < 800.0))
        if contrast:
            # marrow is darker than the cortex around it; a contrast lumen is as bright as its rim gets
            rim = ndi.grey_dilation(lab, footprint=_PLANE8)
            rim = np.where((lab == 0) & raw, rim, 0)
            rim_max = np.asarray(ndi.maximum(h, rim, idx), dtype=float)
            keep &= (rim_max - mean_hu > 150.0) & (mean_hu < CONTRAST_LUMEN_MIN_HU)
        holes = np.isin(lab, idx[keep])
    bone = raw | holes
    if contrast:
        # what is left of a lumen is its one-voxel rim (partial volume with fat): hollow and thin,
        # unlike a filled bone; keep only bone within a voxel of a core that survives an opening
        cross = ndi.generate_binary_structure(3, 1)
        bone &= ndi.binary_dilation(ndi.binary_opening(bone, structure=cross), structure=cross)
    lab, n = ndi.label(bone)
    if n:
        sizes = np.bincount(lab.ravel()) * float(np.prod(spacing))
        sizes[0] = 0
        keep = sizes >= MIN_BONE_VOLUME_MM3
        if contrast:
            keep[1:] &= ~_vessel_like(h, lab, n, spacing)
        bone = keep[lab]
    return bone


def _drop_fragments(raw: np.ndarray, xc: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """``raw`` without its lateral face-connected components under :data:`MIN_BONE_VOLUME_MM3` (bool).

    The size rule of :func:`_bone_work` says such a fragment is not skeleton (vessel-wall calcium,
    a calcified node); it must hold *before* the cortex closing too. A plaque on an iliac artery
    3–4 mm from the pelvic brim is one 3-mm voxel from the cortex: the closing (up to ~12 mm) joins
    the two, the fat between them becomes an enclosed off-midline "marrow" region and is filled,
    and plaque and fat join the hip (seed 3 of the vascular phantom: 21 of 27 plaque voxels in
    ``hip_left``, then removed by the 3-mm bone exclusion of the score). Only fragments centred more
    than :data:`SACRUM_HALF_WIDTH_MM` from the midline ``xc`` (index units per slice) are dropped:
    nearer, small cortex pieces of the vertebrae and the thin sacrum close the rings that enclose
    their marrow (dropping them there cost the sample CT 0.8 points of sacrum Dice). A fragment
    enclosed by real cortex (a bright trabecula) is still filled back as part of its hole.
    """
    lab, n = ndi.label(raw)
    if n == 0:
        return raw
    idx = np.arange(1, n + 1)
    volume_mm3 = np.bincount(lab.ravel(), minlength=n + 1)[1:] * float(np.prod(spacing))
    com = np.asarray(ndi.center_of_mass(raw, lab, idx)).reshape(-1, 3)
    off_mid_mm = np.abs(com[:, 2] - xc[np.clip(com[:, 0].round().astype(int), 0, len(xc) - 1)]) * spacing[2]
    drop = (volume_mm3 < MIN_BONE_VOLUME_MM3) & (off_mid_mm > SACRUM_HALF_WIDTH_MM)
    return raw & ~np.concatenate([[False], drop])[lab]


def _vessel_like(h: np.ndarray, lab: np.ndarray, n: int, spacing: tuple[float, float, float]) -> np.ndarray:
    """Per component (1…n), whether it is an enhanced vessel segment rather than a bone (bool).

    A vessel is a tube: long along z for its cross-section (side of the mean slice area under
    :data:`VESSEL_MAX_SIDE_MM`, length ≥ :data:`TUBE_ELONGATION` × that side, or any length when
    smaller than :data:`VESSEL_STUB_MM3`) and, at 3 mm, its
    median is lumen (< 500 HU); a rib or a fibula of that calibre is cortical bone, brighter.
    """
    idx = np.arange(1, n + 1)
    count = np.bincount(lab.ravel(), minlength=n + 1)[1:].astype(float)
    z_slices = np.asarray([sl[0].stop - sl[0].start if sl is not None else 1 for sl in ndi.find_objects(lab, n)],
                          dtype=float)
    side_mm = np.sqrt(count / z_slices * spacing[1] * spacing[2])
    median_hu = np.asarray(ndi.median(h, lab, idx), dtype=float)
    # a short stub (cut out of a longer vessel by the cortex rule) need not look elongated
    stub = count * float(np.prod(spacing)) < VESSEL_STUB_MM3
    return (((z_slices * spacing[0] >= TUBE_ELONGATION * side_mm) | stub) & (side_mm <= VESSEL_MAX_SIDE_MM)
            & (median_hu < 500.0))


def _fill_sacrum(bone: np.ndarray, h: np.ndarray, z_disc: float, dx_mm: np.ndarray,
                 sp: tuple[float, float, float]) -> np.ndarray:
    """Fill the fatty marrow of the sacrum: regions enclosed by bone below the L5/S1 disc.

    Sacral marrow is often fat (median ~20 HU), so the hole rule of :func:`_bone_work` (mean
    above :data:`HOLE_FILL_HU`) leaves the sacrum a hollow shell. Below L5/S1 and within
    :data:`SACRUM_HALF_WIDTH_MM` of the midline, a region the cortex encloses in an axial slice
    (after closing its gaps) is marrow when it is smaller than :data:`MAX_SACRAL_HOLE_AREA_MM2`
    and is not air or fluid darker than −200 HU (the pelvic cavity is larger; bowel gas is air).
    """
    z0 = int(np.floor(z_disc)) + 1
    if z0 >= bone.shape[0]:
        return bone
    zone = np.zeros_like(bone)
    zone[z0:] = (np.abs(dx_mm[z0:]) <= SACRUM_HALF_WIDTH_MM)[:, None, :]
    shell = bone & zone
    closed = ndi.binary_closing(np.pad(shell, ((0, 0), (4, 4), (4, 4))), structure=_PLANE8,
                                iterations=2)[:, 4:-4, 4:-4]
    holes = _fill_holes_2d(closed | shell) & ~bone & zone
    lab, n = ndi.label(holes, structure=_PLANE)
    if not n:
        return bone
    idx = np.arange(1, n + 1)
    area_mm2 = ndi.sum_labels(holes, lab, idx) * sp[1] * sp[2]
    mean_hu = np.asarray(ndi.mean(h, lab, idx), dtype=float)
    keep = (area_mm2 < MAX_SACRAL_HOLE_AREA_MM2) & (mean_hu > -200.0)
    return bone | (np.isin(lab, idx[keep]) | (closed & zone & ~bone & (h > -200.0)))


def _per_slice_centroid(mask: np.ndarray, axis: int) -> np.ndarray:
    """Mean index along ``axis`` (1 = y, 2 = x) of ``mask`` per slice, interpolated over empty slices."""
    n = mask.shape[axis]
    cnt = mask.sum(axis=(1, 2)).astype(float)
    other = 2 if axis == 1 else 1
    pos = (mask.sum(axis=other) * np.arange(n)).sum(axis=1) / np.maximum(cnt, 1)
    ok = cnt > 0
    if not ok.any():
        return np.full(mask.shape[0], n / 2.0)
    return np.interp(np.arange(mask.shape[0]), np.flatnonzero(ok), pos[ok])


@dataclass(frozen=True)
class _Column:
    column: np.ndarray  # bool, the spine + sacrum bone of the midline strip
    y_front: np.ndarray  # per slice, index of the anterior edge of the vertebral bodies (float, NaN outside)
    profile: np.ndarray  # per slice, bone fraction of the box behind y_front
    z_range: tuple[int, int]  # first and last slice holding column bone


def _spine_midline_x(bone: np.ndarray, body: np.ndarray, xc: np.ndarray, sp: tuple[float, float, float]) -> np.ndarray:
    """Left-right position of the spine per slice (index units), refined from the body's centre.

    The body's centre is off the spine when the field of view cuts one flank; the posterior bone
    within 40 mm of it is the spine (and sacrum), whose median x is used where there is enough.
    """
    nz, ny, nx = bone.shape
    yb = _per_slice_centroid(body, 1)
    near = (np.abs(np.arange(nx)[None, :] - xc[:, None]) * sp[2] <= 40.0)[:, None, :]
    post = np.arange(ny)[None, :, None] >= (yb - 15.0 / sp[1])[:, None, None]
    cand = bone & near & post
    counts = cand.sum(axis=(1, 2))
    ok = counts * sp[1] * sp[2] >= 200.0
    if ok.sum() < 3:
        return xc
    xs = np.where(ok, (cand.sum(axis=1) * np.arange(nx)).sum(axis=1) / np.maximum(counts, 1), np.nan)
    z = np.arange(nz)
    xs = np.interp(z, z[ok], xs[ok])
    return ndi.median_filter(xs, size=7, mode="nearest")


def _spine_column(bone: np.ndarray, body: np.ndarray, xc: np.ndarray, sp: tuple[float, float, float],
                  thick_front: bool = False) -> _Column:
    nz, ny, nx = bone.shape
    dx = (np.arange(nx)[None, :] - xc[:, None]) * sp[2]  # (z, x) mm from the midline
    strip = (np.abs(dx) <= 15.0)[:, None, :]
    yb = _per_slice_centroid(body, 1)
    # the vertebral bodies lie behind the body's centre; sternum and pubis lie in front of it
    post = np.arange(ny)[None, :, None] >= (yb - 15.0 / sp[1])[:, None, None]
    cand = bone & strip & post
    lab, n = ndi.label(cand)
    column = np.zeros_like(bone)
    if n:
        sizes = np.bincount(lab.ravel()) * float(np.prod(sp))
        sizes[0] = 0
        column = (sizes >= 2000.0)[lab]
    has = column.any(axis=(1, 2))
    y_front = np.full(nz, np.nan)
    if not has.any():
        return _Column(column, y_front, np.zeros(nz), (0, -1))
    front_of = column.any(axis=2)
    if thick_front:
        # on a contrast scan the front edge is read on the thick part of the column (vertebral
        # bodies), which an opening keeps and an enhanced iliac artery lying on it does not
        thick = ndi.binary_opening(column, structure=_PLANE8, iterations=2)
        front_of = np.where(thick.any(axis=(1, 2))[:, None], thick.any(axis=2), front_of)
    first_y = np.where(front_of, np.arange(ny)[None, :], ny).min(axis=1).astype(float)
    first_y[~has] = np.nan
    # a disc slice has no body bone in front: take the most anterior edge of the neighbouring slices
    w = max(3, int(np.ceil(15.0 / sp[0])) | 1)
    filled = np.where(has, first_y, ny)
    env = ndi.minimum_filter1d(filled, size=w, mode="nearest").astype(float)
    env = ndi.median_filter(env, size=w, mode="nearest")
    env[~has] = np.nan
    z0, z1 = int(np.flatnonzero(has)[0]), int(np.flatnonzero(has)[-1])
    y_front = env
    # bone fraction of a box 3–18 mm behind the front edge, ±10 mm about the midline
    yy = np.arange(ny)[None, :]
    depth = (yy - np.nan_to_num(env, nan=-1e6)[:, None]) * sp[1]
    in_y = (depth >= 3.0) & (depth <= 18.0)
    in_x = np.abs(dx) <= 10.0
    box = in_y[:, :, None] & in_x[:, None, :]
    nbox = box.sum(axis=(1, 2))
    profile = np.where(nbox > 0, (bone & box).sum(axis=(1, 2)) / np.maximum(nbox, 1), 0.0)
    return _Column(column, y_front, profile, (z0, z1))


#: A disc: bone fraction of the body box at most this, and this much below its neighbours.
DISC_MAX_FRACTION = 0.3
DISC_PROMINENCE = 0.4
#: Closest spacing of two discs (a lower thoracic or lumbar body is ≥ 20 mm high; a fused S1/S2
#: disc remnant may lie 15 mm below L5/S1 and must not hide it).
DISC_MIN_SPACING_MM = 12.0
#: A slice belongs to the sacrum region when the bone joined to the column is this wide (alae + ilia).
SACRAL_WIDTH_MM = 200.0


def _drop_prevertebral_calcium(bone: np.ndarray, y_front: np.ndarray, dx_mm: np.ndarray,
                               sp: tuple[float, float, float]) -> np.ndarray:
    """Remove thin bright structures in front of the vertebral bodies (aortic / iliac wall calcium).

    A plaque of the posterior aortic wall often touches the anterior cortex at 3 mm; it is thin, a
    vertebral body is not, so an opening (one voxel) in the prevertebral zone removes the plaque
    and keeps the body. Calcium must never be labelled bone: it would be excluded from scoring.
    """
    yy = np.arange(bone.shape[1])[None, :, None]
    depth_mm = (yy - np.nan_to_num(y_front, nan=-1e6)[:, None, None]) * sp[1]
    zone = (depth_mm <= 9.0) & (np.abs(dx_mm) <= 45.0)[:, None, :] & np.isfinite(y_front)[:, None, None]
    if not zone.any():
        return bone
    thick = ndi.binary_opening(bone, structure=ndi.generate_binary_structure(3, 1))
    return bone & ~(zone & ~thick)


def _prune_discs(discs: np.ndarray, profile: np.ndarray, dz_mm: float) -> np.ndarray:
    """Drop the weaker of two dips that would make a vertebra implausibly short.

    A lower thoracic or lumbar body is 20–35 mm high and its neighbours differ little; a dip that
    leaves a segment under 15 mm, or under 0.65 × the median segment, is a streak or an oblique
    end plate: of the pair, the one whose removal leaves the more even heights goes.
    """
    discs = list(discs)
    while len(discs) >= 2:
        gaps = np.diff(discs)
        median = float(np.median(gaps)) if len(gaps) >= 3 else float(np.max(gaps))
        short = np.flatnonzero((gaps * dz_mm < 15.0) | (gaps < 0.65 * median))
        if not len(short):
            break
        k = int(short[np.argmin(gaps[short])])

        def irregularity(drop: int) -> float:
            g = np.diff([d for i, d in enumerate(discs) if i != drop])
            return float(np.sum((g - np.median(g)) ** 2)) if len(g) else 0.0

        # drop the one whose removal leaves the more regular column; on a tie, the shallower dip
        ia, ib = irregularity(k), irregularity(k + 1)
        if abs(ia - ib) > 1e-9:
            discs.pop(k if ia < ib else k + 1)
        else:
            discs.pop(k if profile[int(round(discs[k]))] > profile[int(round(discs[k + 1]))] else k + 1)
    return np.asarray(discs, dtype=float)


def _metal_slices(hu_c: np.ndarray, f: tuple[int, int, int], dx_mm: np.ndarray) -> np.ndarray:
    """Working-grid slices (bool per slice) with metal within 80 mm of the spine's midline.

    Read at the input resolution (a block maximum), since a stent wire is diluted by averaging;
    the femoral cortex and hip prostheses lie further out and do not streak the spine.
    """
    pad = [(0, (-n) % k) for n, k in zip(hu_c.shape, f)]
    a = np.pad(hu_c > METAL_HU, pad)
    s = a.shape
    block = a.reshape(s[0] // f[0], f[0], s[1] // f[1], f[1], s[2] // f[2], f[2]).any(axis=(1, 3, 5))
    block = block[: dx_mm.shape[0], :, : dx_mm.shape[1]]
    return (block & (np.abs(dx_mm) <= 80.0)[:, None, :]).any(axis=(1, 2))


def _discs_outside_metal(discs: np.ndarray, metal_z: np.ndarray, z_range: tuple[int, int],
                         dz_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Drop disc candidates within 6 mm of a metal slice (its dark streaks fake discs).

    A gap left longer than 1.5 × the usual vertebral height is split evenly. Returns the discs
    and a bool per slice marking the streaked range, whose levels are then uncertain.
    """
    near = ndi.binary_dilation(metal_z, iterations=max(1, int(round(6.0 / dz_mm))))
    if not near.any() or not len(discs):
        return discs, near
    kept = [d for d in discs if not near[int(round(d))]]
    gaps = np.diff(discs)
    usual = float(np.percentile(gaps, 75)) if len(gaps) else 0.0
    out: list[float] = []
    for a, b in zip(kept[:-1], kept[1:]):
        out.append(a)
        if usual > 0 and b - a > 1.5 * usual:
            k = int(round((b - a) / usual))
            out.extend(a + (b - a) * np.arange(1, k) / k)
    if kept:
        out.append(kept[-1])
    return np.asarray(out, dtype=float), near


def _find_discs(profile: np.ndarray, z_range: tuple[int, int], dz_mm: float) -> np.ndarray:
    """Slice indices (canonical) of the intervertebral discs: minima of the body-box bone fraction."""
    z0, z1 = z_range
    if z1 - z0 < 3:
        return np.zeros(0, dtype=float)
    p = profile[z0: z1 + 1]
    peaks, _ = find_peaks(np.concatenate([[1.0], 1.0 - p, [1.0]]), height=1.0 - DISC_MAX_FRACTION,
                          prominence=DISC_PROMINENCE, distance=max(1, int(DISC_MIN_SPACING_MM / dz_mm)),
                          plateau_size=(1, None))
    peaks = peaks - 1 + z0
    # a disc several slices thick gives a plateau: take its centre
    centres = []
    for pk in peaks:
        lo = hi = pk
        while lo - 1 >= z0 and profile[lo - 1] <= DISC_MAX_FRACTION:
            lo -= 1
        while hi + 1 <= z1 and profile[hi + 1] <= DISC_MAX_FRACTION:
            hi += 1
        centres.append(0.5 * (lo + hi))
    discs = _prune_discs(np.unique(np.asarray(centres, dtype=float)), profile, dz_mm)
    # a dip within 12 mm of the end of the column in view leaves a sliver too thin to call a
    # vertebra; it is more often an end plate cut obliquely than a disc
    edge = max(1.0, 12.0 / dz_mm)
    return discs[(discs - z0 >= edge) & (z1 - discs >= edge)]


def _joined_width_mm(bone: np.ndarray, column: np.ndarray, dx_mm: float) -> np.ndarray:
    """Per slice, left–right extent (mm) of the in-plane bone components that touch the column."""
    lab, _ = ndi.label(bone, structure=_PLANE8)
    touched = np.zeros(int(lab.max()) + 1, bool)
    touched[np.unique(lab[column])] = True
    touched[0] = False
    m = touched[lab].any(axis=1)  # (z, x)
    nx = m.shape[1]
    first = np.where(m, np.arange(nx)[None, :], nx).min(axis=1)
    last = np.where(m, np.arange(nx)[None, :], -1).max(axis=1)
    return np.where(last >= first, (last - first + 1) * dx_mm, 0.0)


def _sacral_disc(discs: np.ndarray, joined: np.ndarray, z_range: tuple[int, int], dz_mm: float) -> int | None:
    """Index into ``discs`` of L5/S1, or None.

    L5/S1 is the lowest disc with bone reaching out to the ilia (the sacral alae, wider than
    :data:`SACRAL_WIDTH_MM`) in most of the 20 mm below it but not in most of the segment above it
    (the lower edge of a tilted L5 may already meet the alae, hence "most").
    """
    z0, z1 = z_range
    wide = joined >= SACRAL_WIDTH_MM
    below_n = max(2, int(round(20.0 / dz_mm)))
    best = None
    for k, d in enumerate(discs):
        top = discs[k - 1] if k > 0 else z0 - 0.5
        above = np.arange(int(np.floor(top)) + 1, int(np.ceil(d)))
        below = np.arange(int(np.floor(d)) + 1, min(z1 + 1, int(np.floor(d)) + 1 + below_n))
        if len(below) and wide[below].mean() >= 0.5 and (not len(above) or wide[above].mean() < 0.5):
            best = k
    return best


#: Above this (HU, at the input resolution) a voxel near the spine is metal: screws, stents
#: (a stent wire reaches only ~1500 HU at 3 mm; vertebral cortex stays below ~1200 HU).
METAL_HU = 1400.0

#: Lateral reach (mm from the midline) beyond which bone labelled as a vertebra is a rib.
VERTEBRA_MAX_HALF_WIDTH_MM = 60.0


def _rib_score(bone: np.ndarray, column: np.ndarray, dx_mm: np.ndarray, lo: float, hi: float) -> float:
    """Volume (mm³ per mm of height) of separate lateral bone (ribs) beside the slices (lo, hi)."""
    zs = np.arange(int(np.floor(lo)) + 1, int(np.ceil(hi)))
    if not len(zs):
        return 0.0
    sub = bone[zs]
    lab, _ = ndi.label(sub, structure=_PLANE8)
    touching = np.zeros(int(lab.max()) + 1, bool)
    touching[np.unique(lab[column[zs]])] = True
    lateral = (np.abs(dx_mm[zs]) >= 30.0)[:, None, :]
    return float((sub & lateral & ~touching[lab]).sum()) / len(zs)


def _femoral_heads(bone: np.ndarray, dx_mm: np.ndarray, z_from: int, sp: tuple[float, float, float]) -> dict:
    """Centre (z, y, x) and radius (mm) of the thickest lateral bone on each side below ``z_from``.

    The femoral head is the thickest bone of the pelvis (a ball of 20–25 mm radius), so the maximum
    of the distance transform off the midline finds it.
    """
    heads = {}
    if z_from >= bone.shape[0]:
        return heads
    sub = np.zeros_like(bone)
    sub[z_from:] = bone[z_from:]
    edt = ndi.distance_transform_edt(sub, sampling=sp)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        region = sub & (sign * dx_mm[:, None, :] >= 50.0)
        if not region.any():
            continue
        vals = np.where(region, edt, 0.0)
        idx = np.unravel_index(int(np.argmax(vals)), vals.shape)
        if vals[idx] >= 10.0:
            heads[side] = (idx, float(vals[idx]))
    return heads


#: Smoothing (σ, mm along z) of the front edge of the vertebral bodies before its slope tilts the disc planes.
DISC_PLANE_SMOOTH_MM = 10.0


def _disc_planes(discs: np.ndarray, y_front: np.ndarray, sp: tuple[float, float, float]) -> list:
    """For each disc, a plane through its centre perpendicular to the spine's sagittal course.

    Returns ``(z_index, y_index, tz, ty)`` with ``(tz, ty)`` the unit tangent (mm) of the front of
    the vertebral bodies; lumbar discs are tilted by up to ~30° (L5/S1), so axial cuts would give
    the lower end plate of one vertebra to the next.
    """
    ok = np.isfinite(y_front)
    if not ok.any():
        return [(float(d), 0.0, 1.0, 0.0) for d in discs]
    z = np.arange(len(y_front))
    yf = np.interp(z, z[ok], y_front[ok])
    # smoothed over about a vertebra's height (σ 10 mm): the front edge steps by a voxel or two
    # at each disc, and a narrower kernel turns that step into a false ~20° tilt right at the disc
    yf = ndi.gaussian_filter1d(yf, max(2.0, DISC_PLANE_SMOOTH_MM / sp[0]), mode="nearest")
    # np.gradient needs two samples: a one-slice (working) volume has no sagittal course, so no tilt
    slope = np.gradient(yf) * sp[1] / sp[0] if yf.size > 1 else np.zeros_like(yf)  # mm of y per mm of z
    planes = []
    for d in discs:
        s = float(np.interp(d, z, slope))
        n = float(np.hypot(1.0, s))
        planes.append((float(d), float(np.interp(d, z, yf)) + 15.0 / sp[1], 1.0 / n, s / n))
    return planes


def _signed_mm(plane: tuple, zz: np.ndarray, yy: np.ndarray, sp: tuple[float, float, float]) -> np.ndarray:
    """Distance (mm) of voxels from a disc plane along the spine, positive on the inferior side."""
    d, yc, tz, ty = plane
    return (zz - d) * sp[0] * tz + (yy - yc) * sp[1] * ty


def _level_names(n_above: int) -> list[str]:
    """Names of ``n_above`` vertebrae counted up from L5 (bottom first)."""
    i5 = VERTEBRA_ORDER.index("vertebrae_L5")
    return [VERTEBRA_ORDER[i5 - j] for j in range(n_above) if i5 - j >= 0]


def _assign_levels(discs: np.ndarray, k_s: int | None, col: _Column, bone: np.ndarray, dx_mm: np.ndarray,
                   sp: tuple[float, float, float]) -> tuple[str, list[tuple[float, float]], list[str], list[str]]:
    """Name the segments between discs: ``(anchor, segments, names, notes)``, cranial → caudal.

    Counted up from L5/S1 (disc ``k_s``) when the sacrum was found, else from T12 = the lowest
    segment with separate rib bone beside it above a rib-free one, else nothing.
    """
    z0, z1 = col.z_range
    if z1 < z0:
        return "none", [], [], ["no spinal column found in the field of view"]
    if not len(discs):
        return "none", [], [], ["no intervertebral disc found: vertebral levels not assigned"]
    bounds = [z0 - 0.5, *discs.tolist()]
    if k_s is not None:
        segments = list(zip(bounds[: k_s + 1], bounds[1: k_s + 2]))
        names = _level_names(len(segments))[::-1]
        segments = segments[len(segments) - len(names):]
        note = (f"L5/S1 disc found {(discs[k_s] - z0) * sp[0]:.0f} mm below the top of the spine in view "
                f"(lowest disc with the sacral alae reaching the ilia below it); {len(names)} vertebrae "
                "counted up from it")
        return "sacrum", segments, names, [note]
    segs = list(zip(bounds, bounds[1:] + [z1 + 0.5]))
    ribs = [_rib_score(bone, col.column, dx_mm, a, b) for a, b in segs]
    rib_min = 400.0 / (sp[1] * sp[2])  # ≥ ~4 cm² of separate rib section per slice
    t12 = None
    for i in range(len(segs) - 1):
        if ribs[i] >= rib_min and ribs[i + 1] < 0.25 * rib_min:
            t12 = i
    if t12 is None:
        return "none", [], [], ["no sacrum in view and no rib-bearing vertebra above a rib-free one: "
                                "vertebral levels not assigned"]
    i12 = VERTEBRA_ORDER.index("vertebrae_T12")
    pairs = [(seg, VERTEBRA_ORDER[i12 - t12 + i]) for i, seg in enumerate(segs)
             if 0 <= i12 - t12 + i < len(VERTEBRA_ORDER)]
    return ("ribs", [p[0] for p in pairs], [p[1] for p in pairs],
            ["no sacrum in view: T12 taken as the lowest vertebra with ribs beside it; levels are uncertain"])


def segment_body(volume: Volume) -> np.ndarray:
    """Patient body mask (bool, input grid): largest component above −300 HU, no table, holes filled.

    Lungs and bowel gas inside the body count as body (holes filled slice by slice).
    """
    frame = canonical_frame(volume.grid)
    f = _factors(frame.spacing_mm)
    h = _block_mean(frame.to_canonical(volume.hu), f)
    body = _body_work(h)
    return frame.from_canonical(_upsample(body, f, frame.to_canonical(volume.hu).shape)).copy()


def segment_bones(volume: Volume) -> LandmarkResult:
    """Skeleton of a CT with labelled vertebrae, sacrum, hips and femurs (see the module docstring).

    Works on a ~3 mm canonical copy; about a second for an abdominal CT on two cores. Levels are
    counted up from the lumbosacral disc (L5/S1) when the sacrum is in the field of view, else down
    from the lowest rib-bearing vertebra (T12, flagged uncertain), else not assigned.
    """
    from skimage.segmentation import watershed

    t0 = time.perf_counter()
    frame = canonical_frame(volume.grid)
    f = _factors(frame.spacing_mm)
    hu_c = frame.to_canonical(volume.hu)
    h = _block_mean(hu_c, f)
    sp = tuple(float(s * k) for s, k in zip(frame.spacing_mm, f))
    nz, ny, nx = h.shape
    body = _body_work(h)
    xc = _midline_x(body)
    contrast = _is_contrast(volume, h, body, sp)
    bone = _bone_work(h, body, xc, sp, contrast)
    xc = _spine_midline_x(bone, body, xc, sp)
    dx_mm = (np.arange(nx)[None, :] - xc[:, None]) * sp[2]
    col = _spine_column(bone, body, xc, sp, contrast)
    bone = _drop_prevertebral_calcium(bone, col.y_front, dx_mm, sp)
    col = _spine_column(bone, body, xc, sp, contrast)
    discs = _find_discs(col.profile, col.z_range, sp[0])
    metal_z = _metal_slices(hu_c, f, dx_mm)
    discs, streaked = _discs_outside_metal(discs, metal_z, col.z_range, sp[0])
    joined = _joined_width_mm(bone, col.column, sp[2])
    k_s = _sacral_disc(discs, joined, col.z_range, sp[0]) if len(discs) else None
    if k_s is not None:
        bone = _fill_sacrum(bone, h, discs[k_s], dx_mm, sp)
    notes = ["contrast-enhanced scan: even, bright regions (lumen, organs) kept out of bone; where an "
             "enhanced vessel touches bone the bone mask is less reliable"] if contrast else []
    if streaked[max(col.z_range[0], 0): col.z_range[1] + 1].any():
        notes.append(f"metal (> {METAL_HU:.0f} HU) in {int(metal_z.sum())} working slices: disc dips next to it "
                     "ignored; the levels there are uncertain")
    z0, z1 = col.z_range
    markers = np.zeros(h.shape, np.int32)
    names: dict[int, str] = {}
    conf: dict[str, float] = {}
    complete: dict[str, bool] = {}

    def add(name: str, mask: np.ndarray) -> None:
        label = len(names) + 1
        names[label] = name
        markers[mask & bone & (markers == 0)] = label

    yy = np.arange(ny)[None, :, None]
    depth_mm = (yy - np.nan_to_num(col.y_front, nan=-1e6)[:, None, None]) * sp[1]
    body_box = (depth_mm >= 0.0) & (depth_mm <= 35.0) & (np.abs(dx_mm) <= 25.0)[:, None, :]
    zz = np.arange(nz)[:, None, None]
    anchor, segments, level_names, level_notes = _assign_levels(discs, k_s, col, bone, dx_mm, sp)
    notes.extend(level_notes)
    dz = sp[0]
    planes = {float(p[0]): p for p in _disc_planes(discs, col.y_front, sp)}
    # the midline column between two tilted disc planes is one vertebra, posterior elements included
    column_core = col.column
    for (a, b), name in zip(segments, level_names):
        inside = np.ones(h.shape, bool)
        if a in planes:
            inside &= _signed_mm(planes[a], zz, yy, sp) > 3.0
        if b in planes:
            inside &= _signed_mm(planes[b], zz, yy, sp) < -3.0
        add(name, inside & (column_core | body_box))
        height_mm = (b - a) * dz
        is_complete = not (a <= z0 - 0.5 and z0 == 0) and not (b >= z1 + 0.5 and z1 == nz - 1)
        c = 0.9 if anchor == "sacrum" else 0.5
        c -= 0.02 * (len(level_names) - 1 - level_names.index(name)) if anchor == "sacrum" else 0.0
        if not is_complete:
            c -= 0.2
        if not 15.0 <= height_mm <= 55.0:
            c -= 0.2
        zs = np.arange(max(int(np.floor(a)), 0), min(int(np.ceil(b)) + 1, nz))
        if streaked[zs].any():
            c -= 0.3  # disc positions here come from the neighbours, not from the image
        conf[name] = round(max(c, 0.05), 2)
        complete[name] = is_complete
    if k_s is not None:
        d = discs[k_s]
        below = _signed_mm(planes[float(d)], zz, yy, sp)
        # the alae: bone near the midline, behind the front of the sacrum, clear of L5's processes
        # (only where the column is in view: below it, the midline bone is the pubic symphysis)
        alae = (below > 10.0) & (np.abs(dx_mm) <= 35.0)[:, None, :] & (depth_mm >= -10.0) & (depth_mm < 1e5)
        add("sacrum", ((below > 3.0) & column_core) | alae)
        z_sac = int(np.ceil(d))
        heads = _femoral_heads(bone, dx_mm, z_sac + int(40.0 / dz), sp)
        z_hip_top = max(0, int(d - 60.0 / dz))
        xx = np.arange(nx)[None, None, :]
        for side, sign in (("left", 1.0), ("right", -1.0)):
            lateral = sign * dx_mm[:, None, :] >= 70.0
            if side in heads:
                (hz, hy, hx), r = heads[side]
                dist = np.sqrt(((zz - hz) * sp[0]) ** 2 + ((yy - hy) * sp[1]) ** 2 + ((xx - hx) * sp[2]) ** 2)
                shaft = (zz >= hz + 50.0 / dz) & (sign * dx_mm[:, None, :] >= 75.0)
                add(f"femur_{side}", (dist <= 0.8 * r) | shaft)
                add(f"hip_{side}", lateral & (zz >= z_hip_top) & (zz <= hz - 1.3 * r / dz))
            else:
                add(f"hip_{side}", lateral & (zz >= z_hip_top))
    labels_w = np.zeros(h.shape, np.int32)
    if names:
        smooth = ndi.gaussian_filter(h, 0.7)
        # joint spaces and discs are valleys of HU: the watershed of −HU puts the borders there
        labels_w = watershed(-smooth, markers, mask=bone).astype(np.int32)
    other_id = len(names) + 1
    names[other_id] = "other_bone"
    vert_ids = [i for i, n in names.items() if n.startswith("vertebrae_")]
    too_lateral = np.isin(labels_w, vert_ids) & (np.abs(dx_mm) > VERTEBRA_MAX_HALF_WIDTH_MM)[:, None, :]
    labels_w[too_lateral] = other_id
    labels_w[bone & (labels_w == 0)] = other_id
    body_id = other_id + 1
    names[body_id] = "body"
    labels_w[body & ~bone] = body_id

    full_c = _upsample(labels_w.astype(np.uint16), f, hu_c.shape)
    if f != (1, 1, 1):
        # at the input resolution a bone block's edge is partly soft tissue: where the working
        # voxel is not inside the bone, keep only the voxels bright enough to be bone
        inside = _upsample(ndi.binary_erosion(bone, structure=ndi.generate_binary_structure(3, 1)), f, hu_c.shape)
        soft = (full_c != body_id) & (full_c > 0) & ~inside & (hu_c <= BONE_EDGE_HU)
        full_c[soft] = body_id
    full = np.ascontiguousarray(frame.from_canonical(full_c))
    body_full = full > 0
    uncertain = tuple(n for n in level_names if conf.get(n, 0.0) < 0.7)
    ids = {n: i for i, n in names.items()}
    uncertain_slices = {n: tuple(int(z) for z in np.flatnonzero((full == ids[n]).any(axis=(1, 2))))
                        for n in uncertain}
    labelmap = LabelMap(labels=full, grid=volume.grid, names=names, uncertain_slices=uncertain_slices,
                        load_notes=("built-in landmark segmenter (model-free)",))
    vertebrae = _vertebra_levels(labelmap, frame, level_names, conf, complete)
    if anchor == "sacrum" and not any(n.startswith("hip_") and (full == i).any() for i, n in names.items()):
        notes.append("no hip bone found beside the sacrum")
    return LandmarkResult(labels=labelmap, vertebrae=vertebrae, level_anchor=anchor, uncertain=uncertain,
                          notes=tuple(notes), runtime_s=time.perf_counter() - t0, confidence=conf,
                          body=body_full)


def _vertebra_levels(labelmap: LabelMap, frame: _Frame, order: list[str], conf: dict[str, float],
                     complete: dict[str, bool]) -> tuple[VertebraLevel, ...]:
    si_axis = frame.perm[0]
    superior_is_low = not frame.flips[0]  # canonical index 0 is superior
    out = []
    ids = labelmap.ids_by_name
    counts = np.bincount(labelmap.labels.ravel().astype(np.int64), minlength=max(ids.values()) + 1)
    for name in order:
        if name not in ids or counts[ids[name]] == 0:
            continue
        m = labelmap.labels == ids[name]
        idx = np.argwhere(m)
        zs = idx[:, si_axis]
        top, bottom = (int(zs.min()), int(zs.max())) if superior_is_low else (int(zs.max()), int(zs.min()))
        centroid = labelmap.grid.index_to_lps(idx.mean(axis=0))
        out.append(VertebraLevel(name=name, z_top_index=top, z_bottom_index=bottom,
                                 centroid_lps_mm=tuple(float(v) for v in centroid),
                                 volume_mm3=float(len(idx) * labelmap.grid.voxel_volume_mm3),
                                 confidence=conf.get(name, 0.0), complete=complete.get(name, False)))
    return tuple(out)


#: Less air than this (cm³) in either half of the body and the scan is not a chest CT (colon gas
#: in an abdominal CT reaches a few hundred cm³ in all).
MIN_LUNG_VOLUME_CM3 = 300.0


def segment_heart_region(volume: Volume) -> np.ndarray | None:
    """Heart region of a chest CT (bool, input grid), or None when the lungs are not in view.

    The region is the soft tissue (−200 to 600 HU, bone excluded) between the lungs, in front of
    the spine, in the lower 70 % of the lungs' height (the heart sits on the diaphragm; above it
    the mediastinum holds only the great vessels), reduced to its largest component after an
    opening that cuts the thin vessel stalks. Lungs: air (< −400 HU) inside the body. Meant as a
    search region for coronary calcium, not as a contour of the myocardium.
    """
    from skimage.morphology import convex_hull_image

    frame = canonical_frame(volume.grid)
    f = _factors(frame.spacing_mm)
    hu_c = frame.to_canonical(volume.hu)
    h = _block_mean(hu_c, f)
    sp = tuple(float(s * k) for s, k in zip(frame.spacing_mm, f))
    body = _body_work(h)
    # a cardiac field of view (≈ 200–250 mm) cuts the lungs: they are closed in at the image edge
    inner = ndi.binary_erosion(_close_at_fov_edge(body, h), structure=_PLANE8, iterations=2)
    air = (h < -400.0) & inner
    lab, n = ndi.label(air)
    if n == 0:
        return None
    sizes = np.bincount(lab.ravel()) * float(np.prod(sp)) / 1000.0
    sizes[0] = 0
    mean_hu = np.asarray(ndi.mean(h, lab, np.arange(n + 1)))
    # lungs are big air spaces of aerated tissue (−950 to −600 HU); bowel gas is nearer −1000 HU
    is_lung = (sizes >= 0.1 * MIN_LUNG_VOLUME_CM3) & (mean_hu > -950.0)
    is_lung[0] = False
    lungs = is_lung[lab]
    xc = _midline_x(body)
    left = (np.arange(h.shape[2])[None, :] > xc[:, None])[:, None, :]
    vox_cm3 = float(np.prod(sp)) / 1000.0
    if min((lungs & left).sum(), (lungs & ~left).sum()) * vox_cm3 < MIN_LUNG_VOLUME_CM3:
        return None
    zs = np.flatnonzero(lungs.any(axis=(1, 2)))
    z_top, z_bot = int(zs[0]), int(zs[-1])
    # The upper 30 % of the lungs' height holds only the great vessels, but that is only known when the
    # apices are in view; a scan that starts below them (lungs cut by the top slice) keeps its top.
    apex_in_view = z_top > 0 and not lungs[z_top].sum() * float(sp[1] * sp[2]) > 2000.0
    z_start = z_top + int(0.3 * (z_bot - z_top)) if apex_in_view else z_top
    bone = _bone_work(h, body, xc, sp)
    xc = _spine_midline_x(bone, body, xc, sp)
    nz, ny, nx = h.shape
    hull = np.zeros_like(lungs)
    for z in range(z_start, z_bot + 1):
        if lungs[z].any():
            hull[z] = convex_hull_image(lungs[z])
    region = hull & ~lungs & ~bone & (h > -200.0) & (h < 600.0) & inner
    # in front of the vertebral bodies: the column's anterior edge, when found
    col = _spine_column(bone, body, xc, sp)
    if np.isfinite(col.y_front).any():
        yf = np.where(np.isfinite(col.y_front), col.y_front, ny)
        region &= np.arange(ny)[None, :, None] < yf[:, None, None]
    region = ndi.binary_opening(region, structure=ndi.generate_binary_structure(3, 1), iterations=2)
    if not region.any():
        return None
    region = _fill_holes_2d(_largest_component(region))
    return np.ascontiguousarray(frame.from_canonical(_upsample(region, f, hu_c.shape)))
