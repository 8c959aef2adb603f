"""CT-derived AAC-24: aortic wall calcium projected onto L1–L4 along the left–right axis (SCORING.md B.2 step 6).

This is a vascalc definition [T], not a published score. Steps:

1. The arrays are transposed to (cranio-caudal, antero-posterior, left-right) index order from the
   grid's direction, so any axis-aligned orientation works; which end is superior / anterior is
   read from the anatomy (L1 above L4, the aorta in front of the spine), not from header signs.
2. Vertebral body of each level = the anterior ``body_fraction`` of the vertebra mask's AP extent
   (the posterior elements would otherwise reach into the disc levels). Its corners in the lateral
   (cc, ap) plane are the voxel-edge extents of the body: anterior/posterior × superior/inferior.
3. Calcium counted = calcium voxels inside the aorta mask dilated by ``wall_margin_voxels`` (wall
   calcium at the mask edge). Wall assignment per axial slice (B.2 step 3): voxels anterior to the
   aortic centroid of that slice are the anterior wall, the others the posterior wall.
4. Each wall's calcium is projected along left–right and graded with
   :func:`vascalc.radiograph.kauppila.score_masks` (each voxel covers its own cc extent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from vascalc.errors import GeometryError, MaskError
from vascalc.imaging.grid import Grid
from vascalc.imaging.labelmap import LabelMap
from vascalc.imaging.volume import Volume
from vascalc.phantoms.types import VertebraLandmark
from vascalc.radiograph.kauppila import DEFAULT_BANDS, KauppilaResult, score_masks, spine_geometry

VERTEBRA_NAMES = {level: f"vertebrae_{level}" for level in ("T12", "L1", "L2", "L3", "L4", "L5")}
#: Agatston threshold (SCORING.md A.2) for non-contrast CT calcium.
DEFAULT_THRESHOLD_HU = 130.0


@dataclass(frozen=True)
class CtAacResult:
    """CT-derived Kauppila result with the lateral-plane landmarks used (pixel = voxel of the (cc, ap) plane)."""

    kauppila: KauppilaResult
    vertebrae: tuple[VertebraLandmark, ...]
    spacing_mm: tuple[float, float]
    n_calcium_voxels: int
    warnings: tuple[str, ...] = ()

    @property
    def aac24(self) -> int:
        return self.kauppila.aac24

    def to_dict(self) -> dict:
        return {"aac24": self.aac24, "kauppila": self.kauppila.to_dict(), "n_calcium_voxels": self.n_calcium_voxels,
                "lateral_spacing_mm": list(self.spacing_mm), "warnings": list(self.warnings),
                "vertebrae": {v.name: {"corners_px": [list(c) for c in v.corners_px]} for v in self.vertebrae}}


def anatomical_axes(grid: Grid) -> tuple[int, int, int]:
    """Array axes (of a (z, y, x) array) along cranio-caudal, antero-posterior and left–right.

    Raises :class:`GeometryError` for an oblique grid (an axis more than ~25° off every patient axis).
    """
    d = np.abs(grid.direction_matrix)  # rows: LPS x, y, z; columns: index axes x, y, z
    lps_of_index = d.argmax(axis=0)
    if sorted(lps_of_index) != [0, 1, 2] or np.any(d.max(axis=0) < 0.9):
        raise GeometryError("the CT grid is oblique; the CT-derived AAC-24 needs axis-aligned slices (resample first)")
    index_of = {int(lps): 2 - k for k, lps in enumerate(lps_of_index)}  # index axis k is array axis 2 - k
    return index_of[2], index_of[1], index_of[0]


def _body_corners(mask: np.ndarray, name: str, superior_low: bool, anterior_low: bool,
                  body_fraction: float) -> VertebraLandmark:
    """Corners (AS, PS, PI, AI) of the vertebral body in the lateral (cc, ap) plane, in voxel edges.

    Body = the anterior ``body_fraction`` of the mask's AP extent; its cranio-caudal extent = the
    slices where that part has at least half its largest cross-section, so that processes or
    pedicles reaching into the anterior part above or below the endplates do not move them.
    """
    cc, ap, _ = np.nonzero(mask)
    a_lo, a_hi = ap.min() - 0.5, ap.max() + 0.5
    depth = body_fraction * (a_hi - a_lo)
    body = (ap <= a_lo + depth) if anterior_low else (ap >= a_hi - depth)
    area = np.bincount(cc[body], minlength=mask.shape[0])
    rows = np.nonzero(area >= 0.5 * area.max())[0]
    c_lo, c_hi = rows.min() - 0.5, rows.max() + 0.5
    front, back = (a_lo, a_lo + depth) if anterior_low else (a_hi, a_hi - depth)
    top, bottom = (c_lo, c_hi) if superior_low else (c_hi, c_lo)
    corners = ((top, front), (top, back), (bottom, back), (bottom, front))
    corners = tuple((float(r), float(c)) for r, c in corners)
    return VertebraLandmark(name=name, corners_px=corners,
                            centre_px=(float((top + bottom) / 2), float((front + back) / 2)))


def ct_aac24(calcium: np.ndarray, aorta: np.ndarray, vertebrae: Mapping[str, np.ndarray], grid: Grid, *,
             wall_margin_voxels: int = 1, body_fraction: float = 0.4,
             bands: str = DEFAULT_BANDS) -> CtAacResult:
    """AAC-24 of a CT from boolean calcium, aorta and vertebra masks on ``grid`` (B.2 step 6).

    ``vertebrae``: ``{"L1": mask, …}``; L1–L4 are required, T12 and L5 (for the outer boundaries)
    are optional (extrapolated and flagged when absent). Raises :class:`MaskError` for an empty
    aorta or a missing / empty L1–L4 mask.
    """
    warnings: list[str] = []
    cc_axis, ap_axis, lr_axis = anatomical_axes(grid)
    order = (cc_axis, ap_axis, lr_axis)
    spacing_zyx = tuple(grid.spacing_mm)

    def lateral(mask: np.ndarray) -> np.ndarray:
        return np.transpose(np.asarray(mask, dtype=bool), order)

    aorta_t = lateral(aorta)
    if not aorta_t.any():
        raise MaskError("the aorta mask is empty; the CT-derived AAC-24 needs the abdominal aorta")
    present = {k: lateral(v) for k, v in vertebrae.items() if v is not None and np.any(v)}
    missing = [lv for lv in ("L1", "L2", "L3", "L4") if lv not in present]
    if missing:
        raise MaskError(f"vertebra masks missing or empty: {', '.join(missing)}; L1–L4 are needed")
    for lv in ("T12", "L5"):
        if lv not in present:
            warnings.append(f"{lv} mask absent: its boundary is extrapolated")
    proj = {k: v.any(axis=2) for k, v in present.items()}
    centroid = {k: np.argwhere(v).mean(axis=0) for k, v in proj.items()}
    superior_low = centroid["L1"][0] < centroid["L4"][0]
    aorta_proj = aorta_t.any(axis=2)
    anterior_low = np.argwhere(aorta_proj)[:, 1].mean() < np.mean([centroid[lv][1] for lv in ("L1", "L4")])
    landmarks = tuple(_body_corners(present[k], k, superior_low, anterior_low, body_fraction) for k in proj)
    spacing_2d = (spacing_zyx[cc_axis], spacing_zyx[ap_axis])
    geometry = spine_geometry(landmarks, spacing_2d)

    region = aorta_t
    if wall_margin_voxels > 0:
        region = ndimage.binary_dilation(aorta_t, iterations=wall_margin_voxels)
    # Dilating the aorta reaches the vertebral bodies behind it: bone is never aortic calcium.
    bone = np.zeros_like(region)
    for v in present.values():
        bone |= v
    calc = lateral(calcium) & region & ~bone
    # Wall assignment per axial slice: the coronal plane through that slice's aortic centroid.
    ap_index = np.arange(aorta_t.shape[1], dtype=float)[None, :, None]
    counts = aorta_t.sum(axis=(1, 2)).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre_ap = (aorta_t * ap_index).sum(axis=(1, 2)) / counts
    no_aorta = counts == 0
    if np.any(calc[no_aorta]):
        warnings.append("calcium near slices without aorta mask was ignored")
        calc[no_aorta] = False
    centre = np.where(no_aorta, np.inf, centre_ap)[:, None, None]
    in_front = (ap_index < centre) if anterior_low else (ap_index > centre)
    anterior_mask = (calc & in_front).any(axis=2)
    posterior_mask = (calc & ~in_front).any(axis=2)
    result = score_masks(geometry, anterior_mask, posterior_mask, bands=bands)
    return CtAacResult(kauppila=result, vertebrae=landmarks, spacing_mm=spacing_2d,
                       n_calcium_voxels=int(calc.sum()), warnings=tuple(warnings) + result.warnings)


def ct_aac24_from_volume(volume: Volume, labels: LabelMap, *, threshold_hu: float = DEFAULT_THRESHOLD_HU,
                         min_voxels: int = 1, bands: str = DEFAULT_BANDS, wall_margin_voxels: int = 1) -> CtAacResult:
    """CT-derived AAC-24 of a CT and its label map (aorta + vertebrae by canonical name).

    Calcium = voxels ≥ ``threshold_hu`` (130 HU, SCORING.md A.2, meant for non-contrast CT) in
    3-D connected components of at least ``min_voxels`` voxels.
    """
    if not labels.has("aorta"):
        raise MaskError("the label map has no 'aorta'; the CT-derived AAC-24 needs it")
    calcium = volume.hu >= threshold_hu
    if min_voxels > 1:
        lab, n = ndimage.label(calcium, structure=np.ones((3, 3, 3), dtype=bool))
        sizes = np.bincount(lab.ravel())
        calcium = sizes[lab] >= min_voxels
        calcium[lab == 0] = False
    verts = {lv: labels.mask(name) for lv, name in VERTEBRA_NAMES.items() if labels.has(name)}
    return ct_aac24(calcium, labels.mask("aorta"), verts, volume.grid, bands=bands,
                    wall_margin_voxels=wall_margin_voxels)


@dataclass(frozen=True)
class AacAgreement:
    """Agreement of two sets of Kauppila results on the same cases (e.g. CT-derived vs radiograph).

    AAC-24: MAE and mean difference (other − reference) in points, ICC(A,1) with its 95 % CI;
    segments: accuracy and linear-weighted κ of the 8 × n grades (SCORING.md B.5); severity: the
    fraction of cases in the same class.
    """

    n_cases: int
    aac24_mae: float
    aac24_mean_difference: float
    aac24_icc_a1: float | None
    aac24_icc_ci: tuple[float, float] | None
    segment_accuracy: float
    segment_kappa_linear: float | None
    severity_agreement: float

    def to_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}


def aac_agreement(reference: Sequence[KauppilaResult], other: Sequence[KauppilaResult]) -> AacAgreement:
    """CT-derived vs radiograph-derived (or any two) AAC results, paired by position (vascalc.stats)."""
    from vascalc.stats.icc import icc_two_methods
    from vascalc.stats.kappa import cohen_kappa

    if len(reference) != len(other) or not reference:
        raise MaskError("agreement needs two equally long, non-empty lists of results")
    a = np.array([r.aac24 for r in reference], dtype=float)
    b = np.array([r.aac24 for r in other], dtype=float)
    ga = np.array([s.grade for r in reference for s in r.segments])
    gb = np.array([s.grade for r in other for s in r.segments])
    icc = ci = None
    if len(a) >= 3 and np.ptp(np.concatenate([a, b])) > 0:
        res = icc_two_methods(a, b)
        icc, ci = float(res.icc), (float(res.ci_low), float(res.ci_high))
    kappa = None
    if np.ptp(np.concatenate([ga, gb])) > 0:
        kappa = float(cohen_kappa(ga, gb, weights="linear", categories=[0, 1, 2, 3]).kappa)
    return AacAgreement(n_cases=len(a), aac24_mae=float(np.mean(np.abs(b - a))),
                        aac24_mean_difference=float(np.mean(b - a)), aac24_icc_a1=icc, aac24_icc_ci=ci,
                        segment_accuracy=float(np.mean(ga == gb)), segment_kappa_linear=kappa,
                        severity_agreement=float(np.mean([r.severity == o.severity for r, o in zip(reference, other)])))
