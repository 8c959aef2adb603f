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
from scipy import ndimage as ndi
from scipy.stats import norm

from vascalc.anatomy import taxonomy
from vascalc.anatomy.regions import NAMED_REGIONS, named_regions
from vascalc.calcium import AgatstonPolicy, CalciumResult, FixedHUPolicy, ScoringOptions, parse_method, score_calcium
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


#: Expected number of mask voxels reaching the detection threshold from noise alone at and above which
#: a fixed-threshold score is flagged (one false "calcium" voxel is already a lesion at ≥ 1 mm² pixels).
NOISE_FALSE_VOXELS_WARN = 1.0
#: Erosion (mm) of the vessel masks before the lumen noise is measured: keeps the wall, its calcium and
#: the partial-volume rim out of the sample (the contrast guard's 2 mm, SCORING.md A.2.1).
NOISE_ERODE_MM = 2.0


def lumen_noise_hu(hu: np.ndarray, vessels: np.ndarray, spacing_mm: tuple[float, float, float],
                   erode_mm: float = NOISE_ERODE_MM) -> tuple[float, float, int] | None:
    """Median HU, robust noise SD (HU, 1.4826 × median absolute deviation) and the number of voxels of
    the lumen more than ``erode_mm`` inside the vessel masks; ``None`` when fewer than 50 remain.

    The robust SD ignores the few calcium voxels that may survive the erosion, so it measures the
    scanner noise that a fixed HU threshold (SCORING.md A.2.1) turns into false calcium.
    """
    mask = np.asarray(vessels) > 0
    box = ndi.find_objects(mask.astype(np.uint8))
    if not box or box[0] is None:
        return None
    # every other slice, cropped to the masks: a noise SD needs thousands of voxels, not millions
    crop = (slice(box[0][0].start, box[0][0].stop, 2),) + tuple(box[0][1:])
    sub = np.pad(mask[crop], 1)
    sampling = (2.0 * spacing_mm[0], spacing_mm[1], spacing_mm[2])
    inner = ndi.distance_transform_edt(sub, sampling=sampling)[1:-1, 1:-1, 1:-1] > erode_mm
    values = np.asarray(hu[crop], dtype=np.float64)[inner]
    values = values[np.isfinite(values)]
    if values.size < 50:
        return None
    median = float(np.median(values))
    sd = 1.4826 * float(np.median(np.abs(values - median)))
    return median, sd, int(values.size)


def expected_noise_voxels(n_voxels: int, median_hu: float, sd_hu: float, threshold_hu: float) -> float:
    """Expected number of ``n_voxels`` Gaussian voxels (``median_hu`` ± ``sd_hu``) at or above
    ``threshold_hu``: the false calcium voxels that noise alone gives a fixed-threshold score."""
    if sd_hu <= 0:
        return float(n_voxels) if median_hu >= threshold_hu else 0.0
    return float(n_voxels * norm.sf((threshold_hu - median_hu) / sd_hu))


def noise_warning(hu: np.ndarray, vessels: np.ndarray, spacing_mm: tuple[float, float, float],
                  threshold_hu: float) -> str | None:
    """A warning when the lumen noise makes a fixed ``threshold_hu`` count noise as calcium (≥
    :data:`NOISE_FALSE_VOXELS_WARN` expected false voxels inside the masks), else ``None``.

    Thin slices and sharp kernels reach 30–60 HU of noise; at 40 HU about 1 % of the blood (40 HU)
    reads ≥ 130 HU and each such voxel is a lesion at ≥ 1 mm² pixels, so Agatston and volume grow
    with the mask size instead of the calcium.
    """
    stats = lumen_noise_hu(hu, vessels, spacing_mm)
    if stats is None:
        return None
    median, sd, _ = stats
    n_mask = int(np.count_nonzero(vessels))
    expected = expected_noise_voxels(n_mask, median, sd, threshold_hu)
    if expected < NOISE_FALSE_VOXELS_WARN:
        return None
    return (f"image noise ≈ {sd:.0f} HU in the vessel lumen (median {median:.0f} HU): about {expected:.0f} of the "
            f"{n_mask} mask voxels reach {threshold_hu:g} HU from noise alone and are counted as calcium, so the "
            "fixed-threshold scores are overestimated; use thicker or smoother reconstructions, or --method adaptive")


#: z coverage (mm) below which the built-in segmenter's masks are flagged: it tells a CTA from a plain
#: scan by the volume of enhanced tissue and follows the vessels along z, and on an untagged contrast
#: scan of ≤ 30 mm it took bowel for the aorta (docs/acquisition-sweep.md); 40 mm and more were right.
SHORT_SCAN_MM = 40.0


def short_scan_warning(volume: Volume, backend: str) -> str | None:
    """A warning when the built-in segmenter (``backend`` builtin, or auto without TotalSegmentator)
    gets a volume shorter than :data:`SHORT_SCAN_MM` along z, else ``None``."""
    if backend == "auto":
        from vascalc.anatomy.totalsegmentator import totalsegmentator_available

        backend = "totalsegmentator" if totalsegmentator_available() else "builtin"
    coverage_mm = volume.grid.shape[0] * float(volume.grid.spacing_mm[0])
    if backend != "builtin" or coverage_mm >= SHORT_SCAN_MM:
        return None
    return (f"the scan covers only {coverage_mm:.1f} mm along z (< {SHORT_SCAN_MM:g} mm): the built-in segmenter "
            "needs a longer stretch to tell contrast from a plain scan and to follow the vessels, so its masks may "
            "be wrong; check the QC pictures or give --vessels")


#: vertebrae above L5: when none of them is in view, the scan starts at L5 or lower
_ABOVE_L5 = tuple(f"vertebrae_T{i}" for i in range(1, 13)) + tuple(f"vertebrae_L{i}" for i in range(1, 5))


def misplaced_aorta_warning(labels: LabelMap) -> str | None:
    """A warning when a segmenter reports an ``aorta`` where there is none: the scan starts at L5 or lower
    (L5 or the sacrum in view, no vertebra above L5), or the aorta mask lies wholly below the middle of L5.
    The aorta divides at L4 (L3–L5 in variants), so such a mask is an iliac artery, bowel or another tube
    and its score is not the aorta's. ``None`` when it cannot be judged (no aorta, no L5/sacrum)."""
    present = set(labels.present_names())
    if "aorta" not in present or not present & {"vertebrae_L5", "sacrum"}:
        return None
    advice = "that mask is probably not the aorta and its score is not the aorta's; check the QC pictures or give --vessels"
    if not present & set(_ABOVE_L5):
        return f"the scan starts at L5 or lower, below the aortic bifurcation (L4), yet the segmenter reports an aorta: {advice}"
    if "vertebrae_L5" not in present:
        return None
    aorta_z = np.flatnonzero(labels.mask("aorta").any(axis=(1, 2)))
    l5_z = np.flatnonzero(labels.mask("vertebrae_L5").any(axis=(1, 2)))
    # index axis 0 runs superior when its direction has a positive LPS z component
    up = float(labels.grid.direction_matrix[2, 2]) >= 0
    l5_mid = 0.5 * (l5_z[0] + l5_z[-1])
    aorta_top = aorta_z[-1] if up else aorta_z[0]
    if (aorta_top < l5_mid) if up else (aorta_top > l5_mid):
        return f"the segmenter's aorta lies wholly below the middle of L5, where the aorta has already divided: {advice}"
    return None


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
        short_note = short_scan_warning(volume, segmenter)
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
    if vessels is None:
        warnings += [note for note in (short_note, misplaced_aorta_warning(labels)) if note]
    if isinstance(policy, (AgatstonPolicy, FixedHUPolicy)):
        fixed = [t["threshold_hu"] for t in calcium.thresholds.values() if t.get("threshold_hu") is not None]
        note = noise_warning(volume.hu, vessel_array, volume.grid.spacing_mm, float(min(fixed))) if fixed else None
        warnings += [note] if note else []
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
