"""Segmentation agreement of mask files or TotalSegmentator-style folders, per structure (§D.1–D.2).

Reading uses :func:`vascalc.imaging.image_files.read_image` (NIfTI via nibabel, NRRD/MHA via
SimpleITK); the metrics come from :mod:`vascalc.stats.overlap`. Only structure names (file stems or
label ids) reach the results, never paths or header fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np

from vascalc.errors import GeometryError, InputError, MaskError
from vascalc.imaging.image_files import image_stem, image_suffix, read_image
from vascalc.stats.overlap import overlap_metrics, surface_distances
from vascalc.stats.tables import SegmentationReport, StructureSegmentation, segmentation_table


def _read_mask(path: Path):
    array, grid, _ = read_image(path)
    if np.issubdtype(array.dtype, np.floating) and not (np.all(np.isfinite(array))
                                                        and np.array_equal(array, np.round(array))):
        # a probability map read as "non-zero = foreground" would count every faint voxel
        raise MaskError(f"{Path(path).name}: mask values are not whole numbers (a probability map?); "
                        "threshold it into a binary mask or label map first")
    return array, grid


def _same_grid(a, b, what: str) -> None:
    if tuple(a.shape) != tuple(b.shape) or not np.allclose(a.spacing_mm, b.spacing_mm, rtol=0, atol=1e-4):
        raise GeometryError(f"{what}: predicted and reference masks are on different grids "
                            f"(shape {a.shape} vs {b.shape}, spacing {a.spacing_mm} vs {b.spacing_mm}); "
                            "resample one onto the other first")


def compare_structure(name: str, predicted: np.ndarray, reference: np.ndarray, spacing_mm, *,
                      hd95: Literal["monai", "medpy"] = "monai",
                      aggregation: Literal["volume", "per_slice_mean"] = "volume") -> StructureSegmentation:
    """Overlap and surface distances of one binary structure (non-zero = foreground)."""
    return StructureSegmentation(name, overlap_metrics(predicted, reference, aggregation=aggregation),
                                 surface_distances(predicted, reference, spacing_mm, hd95=hd95))


def segmentation_report(predicted: Path | str, reference: Path | str, *, hd95: Literal["monai", "medpy"] = "monai",
                        aggregation: Literal["volume", "per_slice_mean"] = "volume") -> SegmentationReport:
    """Compare two mask files or two folders of ``<structure>.nii.gz`` masks, structure by structure.

    Files: a binary mask each (one structure, named after the reference file), or two label maps
    (values > 1 present) compared label by label (``label_<id>``). Folders: every reference
    structure is compared; one missing from the predicted folder counts as an empty prediction and
    is flagged; predicted structures without a reference are listed in the notes. Masks must share shape and spacing (:class:`GeometryError` otherwise).
    """
    pred, ref = Path(predicted), Path(reference)
    for path in (pred, ref):
        if not path.exists():
            raise InputError(f"{path.name}: no such file or folder")
    if pred.is_dir() != ref.is_dir():
        raise InputError("give two mask files or two folders of masks, not one of each")
    results, notes = [], []
    if ref.is_dir():
        ref_files = {image_stem(p): p for p in sorted(ref.iterdir()) if p.is_file() and image_suffix(p)}
        pred_files = {image_stem(p): p for p in sorted(pred.iterdir()) if p.is_file() and image_suffix(p)}
        if not ref_files:
            raise InputError(f"reference folder {ref.name} holds no mask files (.nii.gz, .nii, .nrrd, .mha)")
        if not set(ref_files) & set(pred_files):
            raise InputError("the predicted and reference folders share no structure name; masks are matched by "
                             "file name (e.g. aorta.nii.gz in both)")
        extra = sorted(set(pred_files) - set(ref_files))
        if extra:
            notes.append(f"{len(extra)} predicted structure(s) without a reference mask not compared: "
                         + ", ".join(extra[:10]) + (" …" if len(extra) > 10 else ""))
        for name, ref_path in ref_files.items():
            ref_array, ref_grid = _read_mask(ref_path)
            if name in pred_files:
                pred_array, pred_grid = _read_mask(pred_files[name])
                _same_grid(pred_grid, ref_grid, name)
                results.append(compare_structure(name, pred_array, ref_array, ref_grid.spacing_mm, hd95=hd95,
                                                 aggregation=aggregation))
            else:
                item = compare_structure(name, np.zeros_like(ref_array), ref_array, ref_grid.spacing_mm, hd95=hd95,
                                         aggregation=aggregation)
                flagged = type(item.overlap)(**{**item.overlap.__dict__,
                                                "flags": item.overlap.flags + ("missing_prediction_file",)})
                results.append(StructureSegmentation(name, flagged, item.distances))
    else:
        pred_array, pred_grid = _read_mask(pred)
        ref_array, ref_grid = _read_mask(ref)
        _same_grid(pred_grid, ref_grid, ref.name)
        if max(int(pred_array.max(initial=0)), int(ref_array.max(initial=0))) > 1:
            labels = sorted(set(np.unique(ref_array).tolist()) | set(np.unique(pred_array).tolist()) - {0})
            for label in labels:
                results.append(compare_structure(f"label_{int(label)}", pred_array == label, ref_array == label,
                                                 ref_grid.spacing_mm, hd95=hd95, aggregation=aggregation))
        else:
            results.append(compare_structure(image_stem(ref), pred_array, ref_array, ref_grid.spacing_mm, hd95=hd95,
                                             aggregation=aggregation))
    return segmentation_table(results, hd95, notes)
