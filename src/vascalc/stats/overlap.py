"""Overlap and surface-distance metrics of a predicted mask against a reference mask.

SCORING.md §D.1 (Dice, IoU, volumetric similarity, sensitivity, precision and their empty-mask
conventions) and §D.2 (Hausdorff and HD95 in mm from the boundary voxels, both HD95 conventions).
Counts come from numpy; distances from :func:`scipy.ndimage.distance_transform_edt` with the voxel
spacing, on the bounding box of the two masks only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
from scipy import ndimage

from vascalc.errors import InputError
from vascalc.stats._common import ResultMixin

HD95Convention = Literal["monai", "medpy"]


@dataclass(frozen=True)
class OverlapResult(ResultMixin):
    """Voxel-overlap metrics (dimensionless, 0–1) with the voxel counts they come from.

    ``aggregation`` is ``"volume"`` (counts over the whole volume, default) or ``"per_slice_mean"``
    (S4's Dice averaged over axial slices; counts are then the whole-volume counts). Undefined
    ratios are NaN and named in ``flags``.
    """

    dice: float
    iou: float
    volumetric_similarity: float
    sensitivity: float
    precision: float
    tp_voxels: int
    fp_voxels: int
    fn_voxels: int
    aggregation: str
    n_slices_used: int | None
    flags: tuple[str, ...]


@dataclass(frozen=True)
class SurfaceDistanceResult(ResultMixin):
    """Hausdorff distance and HD95 in mm between the mask boundaries (SCORING.md §D.2).

    ``hd95_convention`` names how HD95 was pooled: ``"monai"`` = max of the two directed 95th
    percentiles, ``"medpy"`` = 95th percentile of both directed sets pooled. ``assd_mm`` is the
    average symmetric surface distance (mean of the pooled directed distances).
    """

    hausdorff_mm: float
    hd95_mm: float
    hd95_convention: str
    assd_mm: float
    n_surface_voxels_predicted: int
    n_surface_voxels_reference: int
    flags: tuple[str, ...]


def _as_masks(predicted: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(predicted) != 0
    ref = np.asarray(reference) != 0
    if pred.shape != ref.shape:
        raise InputError(f"predicted mask shape {pred.shape} differs from reference mask shape {ref.shape}; "
                         "the masks must share one grid")
    if pred.ndim < 2:
        raise InputError(f"masks must be 2-D or 3-D arrays, got {pred.ndim}-D")
    return pred, ref


def _ratios(tp: float, fp: float, fn: float) -> tuple[float, float, float, float, float, list[str]]:
    """(dice, iou, vs, sensitivity, precision, flags) from counts with §D.1's empty-mask rules."""
    flags: list[str] = []
    ref_n, pred_n = tp + fn, tp + fp
    if ref_n == 0 and pred_n == 0:
        return 1.0, 1.0, 1.0, float("nan"), float("nan"), ["empty_reference", "empty_prediction"]
    denominator = 2 * tp + fp + fn
    dice = 2 * tp / denominator
    iou = tp / (tp + fp + fn)
    vs = 1.0 - abs(fn - fp) / denominator
    if ref_n == 0:
        flags.append("empty_reference")
        sensitivity = float("nan")
    else:
        sensitivity = tp / ref_n
    if pred_n == 0:
        flags.append("empty_prediction")
        precision = float("nan")
    else:
        precision = tp / pred_n
    return dice, iou, vs, sensitivity, precision, flags


def overlap_metrics(predicted: np.ndarray, reference: np.ndarray, *,
                    aggregation: Literal["volume", "per_slice_mean"] = "volume") -> OverlapResult:
    """Dice, IoU, volumetric similarity, sensitivity and precision of ``predicted`` vs ``reference``.

    Non-zero voxels are foreground. Both masks empty → Dice = IoU = VS = 1 with ``empty_reference``;
    one empty → Dice = IoU = 0 and the ratio with a zero denominator NaN, flagged (§D.1).
    ``per_slice_mean`` averages the per-slice Dice/IoU/VS over axial slices (axis 0), skipping
    slices empty in both masks [T]; sensitivity and precision stay whole-volume ratios.
    """
    pred, ref = _as_masks(predicted, reference)
    tp = int(np.count_nonzero(pred & ref))
    fp = int(np.count_nonzero(pred & ~ref))
    fn = int(np.count_nonzero(~pred & ref))
    dice, iou, vs, sensitivity, precision, flags = _ratios(tp, fp, fn)
    n_slices = None
    if aggregation == "per_slice_mean":
        axes = tuple(range(1, pred.ndim))
        tp_s = np.count_nonzero(pred & ref, axis=axes).astype(float)
        fp_s = np.count_nonzero(pred & ~ref, axis=axes).astype(float)
        fn_s = np.count_nonzero(~pred & ref, axis=axes).astype(float)
        used = (tp_s + fp_s + fn_s) > 0
        n_slices = int(used.sum())
        if n_slices:
            d = 2 * tp_s[used] + fp_s[used] + fn_s[used]
            dice = float(np.mean(2 * tp_s[used] / d))
            iou = float(np.mean(tp_s[used] / (tp_s[used] + fp_s[used] + fn_s[used])))
            vs = float(np.mean(1.0 - np.abs(fn_s[used] - fp_s[used]) / d))
    elif aggregation != "volume":
        raise InputError(f"unknown overlap aggregation {aggregation!r}; use 'volume' or 'per_slice_mean'")
    return OverlapResult(dice=float(dice), iou=float(iou), volumetric_similarity=float(vs),
                         sensitivity=float(sensitivity), precision=float(precision), tp_voxels=tp,
                         fp_voxels=fp, fn_voxels=fn, aggregation=aggregation, n_slices_used=n_slices,
                         flags=tuple(flags))


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels: the mask minus its erosion with the face-connected structuring element.

    Voxels on the array border count as boundary (the outside is background), as in MONAI.
    """
    mask = np.asarray(mask, dtype=bool)
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def directed_surface_distances(source: np.ndarray, target: np.ndarray,
                               spacing_mm: Sequence[float]) -> np.ndarray:
    """Distance in mm from each boundary voxel of ``source`` to the nearest boundary voxel of ``target``.

    Both masks must be non-empty. Works on the common bounding box (plus one voxel) so the
    Euclidean distance transform costs the size of the structures, not of the scan.
    """
    src, tgt = _as_masks(source, target)
    spacing = _check_spacing(spacing_mm, src.ndim)
    box = _bounding_box(src | tgt)
    src_s, tgt_s = surface_voxels(src[box]), surface_voxels(tgt[box])
    distance_to_target = ndimage.distance_transform_edt(~tgt_s, sampling=spacing)
    return distance_to_target[src_s]


def surface_distances(predicted: np.ndarray, reference: np.ndarray, spacing_mm: Sequence[float], *,
                      hd95: HD95Convention = "monai", percentile: float = 95.0) -> SurfaceDistanceResult:
    """Hausdorff, HD95 and ASSD in mm between the boundaries of two masks (SCORING.md §D.2).

    ``spacing_mm`` is per array axis, e.g. ``(dz, dy, dx)``. Either mask empty → NaN distances with
    ``empty_prediction`` / ``empty_reference`` flags (as MONAI). Percentiles use numpy's linear
    interpolation.
    """
    pred, ref = _as_masks(predicted, reference)
    spacing = _check_spacing(spacing_mm, pred.ndim)
    if hd95 not in ("monai", "medpy"):
        raise InputError(f"unknown HD95 convention {hd95!r}; use 'monai' or 'medpy'")
    flags = []
    if not pred.any():
        flags.append("empty_prediction")
    if not ref.any():
        flags.append("empty_reference")
    if flags:
        nan = float("nan")
        return SurfaceDistanceResult(nan, nan, hd95, nan, 0, 0, tuple(flags))
    box = _bounding_box(pred | ref)
    pred_s, ref_s = surface_voxels(pred[box]), surface_voxels(ref[box])
    d_pr = ndimage.distance_transform_edt(~ref_s, sampling=spacing)[pred_s]
    d_rp = ndimage.distance_transform_edt(~pred_s, sampling=spacing)[ref_s]
    pooled = np.concatenate([d_pr, d_rp])
    if hd95 == "monai":
        hd95_value = max(np.percentile(d_pr, percentile), np.percentile(d_rp, percentile))
    else:
        hd95_value = np.percentile(pooled, percentile)
    return SurfaceDistanceResult(
        hausdorff_mm=float(max(d_pr.max(), d_rp.max())), hd95_mm=float(hd95_value), hd95_convention=hd95,
        assd_mm=float(pooled.mean()), n_surface_voxels_predicted=int(d_pr.size),
        n_surface_voxels_reference=int(d_rp.size), flags=())


def _check_spacing(spacing_mm: Sequence[float], ndim: int) -> np.ndarray:
    spacing = np.asarray(spacing_mm, dtype=float).reshape(-1)
    if spacing.size != ndim or not np.all(np.isfinite(spacing)) or np.any(spacing <= 0):
        raise InputError(f"spacing_mm must give {ndim} positive voxel sizes in mm, got {tuple(spacing.tolist())}")
    return spacing


def _bounding_box(mask: np.ndarray) -> tuple[slice, ...]:
    """Slices of the bounding box of ``mask`` grown by one voxel (clipped to the array)."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        present = np.flatnonzero(mask.any(axis=other))
        box.append(slice(max(int(present[0]) - 1, 0), min(int(present[-1]) + 2, mask.shape[axis])))
    return tuple(box)
