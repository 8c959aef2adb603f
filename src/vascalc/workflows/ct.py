"""The CT job end to end: load → vessel masks → detect → score → typed result (→ files).

This module only wires the stages together; every measurement is made by the pure functions in
:mod:`vascalc.calcium`, every file is read by :mod:`vascalc.imaging` and written by
:mod:`vascalc.report`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from vascalc.anatomy import taxonomy
from vascalc.anatomy.regions import NAMED_REGIONS, named_regions
from vascalc.calcium import CalciumResult, ScoringOptions, parse_method, score_calcium
from vascalc.errors import InputError, MaskError
from vascalc.imaging import LabelMap, Volume, load_labelmap, load_volume
from vascalc.imaging.load import axial_slices_first
from vascalc.workflows.header import result_header, scan_input


ProgressCallback = Callable[[str], None]


@dataclass(frozen=True, eq=False)
class CtResult:
    """Everything one CT scoring run produced. ``to_dict()`` is the ``result.json`` content.

    The arrays (``volume``, ``vessels``, ``calcium``) are kept for the writers and are not part of the
    JSON. ``timings_s`` is also left out of the JSON so that two runs give identical bytes.
    """

    case_id: str
    volume: Volume
    vessels: LabelMap
    calcium: CalciumResult
    method: dict
    vessel_source: dict
    warnings: tuple[str, ...] = ()
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        calcium = self.calcium.to_dict()
        return {
            **result_header("ct", self.case_id),
            "input": {
                **scan_input(self.volume),
                "vessels": self.vessel_source,
            },
            "method": self.method,
            "structures": calcium["structures"],
            "total": calcium["total"],
            "categories": calcium.get("categories", {}),
            "thresholds": calcium["thresholds"],
            "lesions": calcium["lesions"],
            "warnings": list(self.warnings) + list(calcium["warnings"]),
        }


def case_id_for(path: Path) -> str:
    """A case name from an input path: the file name without image extensions, or the folder name."""
    name = Path(path).name
    for suffix in (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)] or name
    return name


def _vessel_labelmap(labels: LabelMap, keep_absent: bool) -> tuple[np.ndarray, dict[int, str], np.ndarray | None]:
    """Split a label map into the arteries to score and the union of bone masks.

    Absent arteries are scored (as zero, flagged) only when the user named them (``keep_absent``):
    a TotalSegmentator table lists carotids and subclavians that an abdominal scan never shows.
    """
    present = set(labels.present_names())
    artery_names = {i: n for i, n in labels.names.items()
                    if taxonomy.is_scored_artery(n) and (keep_absent or n in present)}
    if not artery_names:
        raise MaskError(
            "the vessel masks contain no artery vascalc scores (e.g. aorta, iliac_artery_left); "
            f"structures found: {', '.join(sorted(present)) or 'none'}")
    vessels = np.where(np.isin(labels.labels, list(artery_names)), labels.labels, 0)
    bone_ids = [i for i, n in labels.names.items() if taxonomy.is_bone(n)]
    bone = np.isin(labels.labels, bone_ids) if bone_ids else None
    if bone is not None and not bone.any():
        bone = None
    return vessels, artery_names, bone


#: Median HU inside the artery masks below which they cannot lie on vessels (blood ≈ 40 HU, lung ≈ −850).
MASKS_ON_AIR_HU = -500.0


def check_masks_on_body(hu: np.ndarray, vessels: np.ndarray) -> float:
    """Median HU (float) inside the artery masks; :class:`MaskError` when it reads air or lung.

    Masks from another scan, another orientation or a shifted grid often land outside the body;
    scoring them gives a confident zero, so they are refused instead.
    """
    # every 8th voxel (2 × 2 × 2 subsampling) is plenty for a median and spares a full-size mask copy
    inside = hu[::2, ::2, ::2][vessels[::2, ::2, ::2] > 0]
    if inside.size < 100:
        inside = hu[vessels > 0]
    if inside.size == 0:
        return float("nan")
    median = float(np.median(inside))
    if median < MASKS_ON_AIR_HU:
        raise MaskError(
            f"the artery masks lie on air or lung (median {median:.0f} HU inside them; blood reads ≈ 40 HU): "
            "they do not match this CT — check that the masks were made from this scan and series")
    return median


def score_ct(
    image: str | Path | Volume,
    vessels: str | Path | LabelMap | None = None,
    *,
    segmenter: str = "auto",
    method: str = "agatston",
    vessel_names: dict[int, str] | str | Path | None = None,
    series_uid: str | None = None,
    resample_masks: bool = False,
    resample_tilt: bool = False,
    resample_uneven: bool = False,
    options: ScoringOptions | None = None,
    regions: tuple[str, ...] = ("thoracic_abdominal",),
    case_id: str | None = None,
    progress: ProgressCallback | None = None,
) -> CtResult:
    """Score calcium per vessel in one CT.

    Parameters
    ----------
    image : path of a DICOM folder/file, NIfTI, NRRD or MHA/MHD, or a loaded :class:`Volume`.
    vessels : label map file (+ ``vessel_names``), TotalSegmentator multilabel file, folder of
        TotalSegmentator-style binary masks, or a :class:`LabelMap` on the volume's grid. ``None``:
        the masks are made from the CT by ``segmenter`` (:func:`vascalc.anatomy.segment.segment`).
    segmenter : ``auto`` | ``builtin`` | ``totalsegmentator`` | ``model:PATH`` (used only when
        ``vessels`` is None).
    method : detection policy (``agatston``, ``hu=<N>``, ``window8bit[:…]``, ``adaptive[:…]``;
        SCORING.md A.2).
    options : lesion, wall, normalisation and mass options (:class:`ScoringOptions`).

    A file stored with coronal or sagittal slices first is put in axial-slice order exactly (no
    interpolation; :func:`vascalc.imaging.load.axial_slices_first`), so that Agatston is taken on
    axial slices. Masks whose median HU reads air or lung are refused (:func:`check_masks_on_body`).

    Returns a :class:`CtResult`; nothing is written (see :func:`write_ct_outputs`).
    """
    report = progress or (lambda message: None)
    timings: dict[str, float] = {}
    options = options or ScoringOptions()
    policy = parse_method(method)
    unknown = [r for r in regions if r not in NAMED_REGIONS]
    if unknown:  # before any reading: a typo must not cost a whole load and segmentation
        raise InputError(f"unknown region {unknown[0]!r}; choose from {', '.join(NAMED_REGIONS)}")

    start = time.perf_counter()
    if isinstance(image, Volume):
        volume = image
        default_case = "volume"
    else:
        report("reading CT")
        volume = load_volume(Path(image), series_uid=series_uid, resample_tilt=resample_tilt,
                             resample_uneven=resample_uneven)
        default_case = case_id_for(Path(image))
    volume = axial_slices_first(volume)
    timings["load_ct_s"] = time.perf_counter() - start

    start = time.perf_counter()
    if vessels is None:
        from vascalc.anatomy.segment import segment

        report(f"segmenting vessels and landmarks ({segmenter})")
        labels = segment(volume, backend=segmenter)
        source = {"kind": "segmenter", "backend": segmenter}
        timings["segment_s"] = time.perf_counter() - start
    elif isinstance(vessels, LabelMap):
        labels = vessels
        source = {"kind": "labelmap_object"}
    else:
        report("reading vessel masks")
        vessels_path = Path(vessels)
        if not vessels_path.exists():
            raise InputError(f"vessel masks not found: {vessels_path}")
        labels = load_labelmap(vessels_path, volume.grid, names=vessel_names, resample=resample_masks)
        source = {"kind": "folder" if vessels_path.is_dir() else "file", "name": vessels_path.name}
    source["structures_present"] = labels.present_names()
    names_given_by_user = vessels is not None and (
        isinstance(vessels, LabelMap) or vessel_names is not None or Path(vessels).is_dir())
    try:
        vessel_array, artery_names, bone = _vessel_labelmap(labels, keep_absent=names_given_by_user)
    except MaskError as error:
        if vessels is None:
            raise MaskError(f"the {segmenter} segmenter found no artery in this CT (structures found: "
                            f"{', '.join(labels.present_names()) or 'none'}); is it a body CT in HU? Give "
                            "--vessels masks made by another tool") from None
        if any("TotalSegmentator v2 'total' table" in note for note in labels.load_notes):
            # a plain label map whose ids happen to be TotalSegmentator ids: say how the names were chosen
            raise MaskError(f"{error}. The label names were taken from the TotalSegmentator v2 table because "
                            "no names table was given; pass --vessel-names for a map with other ids") from None
        raise
    source["arteries_scored"] = [n for _, n in sorted(artery_names.items())]
    source["arteries_empty"] = [n for n in source["arteries_scored"] if n not in source["structures_present"]]
    source["bone_excluded"] = bone is not None
    if not any(n in source["structures_present"] for n in artery_names.values()):
        raise MaskError("every artery mask is empty (" + ", ".join(sorted(artery_names.values())) +
                        "): there is no vessel to score in")
    check_masks_on_body(volume.hu, vessel_array)
    region_splits, region_notes = named_regions(tuple(regions), labels, volume.grid,
                                                tuple(n for _, n in sorted(artery_names.items())))
    timings["load_masks_s"] = time.perf_counter() - start

    start = time.perf_counter()
    report("scoring calcium")
    calcium = score_calcium(
        volume.hu, vessel_array, artery_names, volume.grid, method=policy, options=options,
        bone_mask=bone, region_splits=region_splits, kvp=volume.info.kvp,
        slice_thickness_mm=volume.info.slice_thickness_mm,
    )
    timings["score_s"] = time.perf_counter() - start

    warnings = [f"{name}: mask is empty (structure absent), scores are zero" for name in source["arteries_empty"]]
    warnings += [note for note in region_notes if not note.startswith("region thoracic_abdominal")]
    if labels.uncertain_slices:
        source["uncertain_slices"] = {n: list(s) for n, s in sorted(labels.uncertain_slices.items()) if s}
        warnings += [f"{name}: segmentation uncertain in {len(s)} slice(s) (no evidence: metal, no contrast…); "
                     "check the QC pictures" for name, s in source["uncertain_slices"].items()]
    return CtResult(
        case_id=case_id or default_case,
        volume=volume,
        vessels=labels,
        calcium=calcium,
        method=calcium.method,
        vessel_source=source,
        warnings=tuple(warnings),
        timings_s=timings,
    )
