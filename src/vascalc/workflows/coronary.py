"""Coronary calcium on a (non-gated) chest CT, end to end: load → heart → candidates → heart frame →
assignment (rules, learned classifier) → per-artery scores → :class:`CoronaryResult`.

Only wiring: the measurements are the pure functions of :mod:`vascalc.coronary`; files are written by
:func:`vascalc.coronary.outputs.write_coronary_outputs`.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from scipy import ndimage as ndi

from vascalc.batch import ScoredCase, score_cases
from vascalc.calcium.policies import AgatstonPolicy, FixedHUPolicy, kv_bands, parse_method
from vascalc.coronary.anatomy import heart_frame
from vascalc.coronary.assign import CLASSES, LesionModel, assign_rules, default_model_path, lesion_features, \
    signed_surface_distance_mm
from vascalc.coronary.candidates import find_candidates
from vascalc.coronary.heart import (HEART_RIGHT_WARNING_MM, blood_pool_stats_hu, find_heart, heart_crop_box,
                                    heart_left_of_body_mm, search_zone)
from vascalc.coronary.options import CoronaryOptions
from vascalc.coronary.results import ARTERIES, CoronaryLesion, CoronaryResult
from vascalc.coronary.score import artery_scores, cluster_scores, slice_convention
from vascalc.errors import InputError, MethodError
from vascalc.imaging import LabelMap, Volume, load_labelmap, load_volume
from vascalc.imaging.load import axial_slices_first
from vascalc.workflows.ct import case_id_for

ProgressCallback = Callable[[str], None]


def _bands(policy, kvp: float | None) -> tuple[tuple[float, float, float, float], bool, dict]:
    """(detection + weight edges, agatston_like, method facts) for the two threshold policies."""
    if isinstance(policy, AgatstonPolicy):
        bands, row, note = kv_bands(kvp, policy)
        return tuple(float(b) for b in bands), False, {"kvp": kvp, "kv_row": row, "kv_note": note}
    if isinstance(policy, FixedHUPolicy):
        t = float(policy.threshold_hu)
        # weights keep the classic 200/300/400 edges; a threshold above an edge lifts it
        return (t, max(t, 200.0), max(t, 300.0), max(t, 400.0)), True, {"kvp": kvp}
    raise MethodError(f"coronary scoring uses 'agatston' (130 HU, kV-adjusted) or 'hu=<N>', not {policy.name!r}")


def resolve_model(model: str | Path | LesionModel | None) -> LesionModel | None:
    """``None`` → the shipped model when present (else rules); ``"rules"`` → rules only; a path or a
    :class:`LesionModel` → that model."""
    if isinstance(model, LesionModel):
        return model
    if getattr(model, "method", None) == "seg3d" or str(model).startswith("seg3d:"):
        # optional 3-D segmentation backend (vascalc.coronary.seg3d_backend; needs vascalc[learn])
        from vascalc.coronary.seg3d_backend import load_seg3d_assigner

        return model if getattr(model, "method", None) == "seg3d" else load_seg3d_assigner(str(model))
    if model is None:
        path = default_model_path()
        return LesionModel.load(path) if path.exists() else None
    if str(model) == "rules":
        return None
    path = Path(model)
    if not path.exists():
        raise InputError(f"coronary lesion model not found: {path}")
    return LesionModel.load(path)


def _binary_heart_names(path: Path) -> dict[int, str] | None:
    """``{id: 'heart'}`` for a binary mask file whose name says nothing (``seg.nii.gz``, ``mask.nrrd``).

    Without it the one label id would be read through TotalSegmentator's table (1 = spleen) and the
    heart would be "missing". A multilabel map, a file with a label table in its header and a mask
    named after a structure (``heart.nii.gz``, ``aorta.nii.gz``) keep the usual name rules.
    """
    from vascalc.anatomy.taxonomy import known_names
    from vascalc.imaging.image_files import image_stem, read_image
    from vascalc.imaging.masks import nifti_label_table

    if path.is_dir() or image_stem(path) in known_names() or nifti_label_table(path):
        return None
    values, _, _ = read_image(path)
    low, high = values.min(), values.max()
    if low < 0 or high == 0 or np.any((values != 0) & (values != high)):
        return None
    return {int(high): "heart"}


def _heart_input(heart, volume: Volume) -> tuple[LabelMap | np.ndarray | None, np.ndarray | None, dict]:
    """Heart mask input → (labels or mask, aorta mask when the labels hold one, source facts)."""
    if heart is None:
        return None, None, {"kind": "found"}
    if isinstance(heart, np.ndarray):
        return heart, None, {"kind": "array"}
    if isinstance(heart, LabelMap):
        labels, facts = heart, {"kind": "labelmap_object"}
    else:
        path = Path(heart)
        if not path.exists():
            raise InputError(f"heart mask not found: {path}")
        labels = load_labelmap(path, volume.grid, names=_binary_heart_names(path), resample=True)
        # the load notes name the mask, never the file path; a resampling must be visible in the result
        facts = {"kind": "folder" if path.is_dir() else "file", "load_notes": list(labels.load_notes)}
    aorta = labels.mask("aorta") if labels.has("aorta") else None
    return labels, aorta, facts


def score_coronary(
    image: str | Path | Volume,
    *,
    heart: str | Path | LabelMap | np.ndarray | None = None,
    segmenter: str = "auto",
    method: str = "agatston",
    options: CoronaryOptions | None = None,
    force: bool = False,
    model: str | Path | LesionModel | None = None,
    case_id: str | None = None,
    progress: ProgressCallback | None = None,
) -> CoronaryResult:
    """Coronary calcium per artery (RCA, LAD with left main, LCX) on a non-contrast chest CT.

    Parameters
    ----------
    image : CT path (DICOM folder/file, NIfTI, NRRD, MHA) or a :class:`Volume`.
    heart : heart mask: TotalSegmentator label map/folder (``heart``; an ``aorta`` label is used
        for the aortic root), a binary mask file, a :class:`LabelMap` or a bool array. ``None``:
        found by ``segmenter`` (``auto`` = TotalSegmentator when installed, else ``builtin``).
    method : ``agatston`` (130 HU, kV-adjusted, SCORING.md A.2.1–A.2.2) or ``hu=<N>``.
    options : :class:`CoronaryOptions`.
    force : score even when the heart blood pool looks contrast-enhanced.
    model : lesion classifier: ``None`` = the shipped model (rules when absent), ``"rules"``, a
        model JSON path, or a :class:`LesionModel`; ``"seg3d:FOLDER"`` (or a loaded
        :class:`vascalc.coronary.seg3d_backend.Seg3DAssigner`) assigns with the optional 3-D
        segmentation backend instead.

    Raises :class:`InputError` (unreadable, not a chest CT), :class:`MaskError` (no heart) and
    :class:`MethodError` (contrast scan without ``force``, unsupported method or kVp).
    """
    report = progress or (lambda message: None)
    options = options or CoronaryOptions()
    policy = parse_method(method)
    if options.strict and isinstance(policy, AgatstonPolicy):
        policy = AgatstonPolicy(strict=True, kv_adjust=policy.kv_adjust, bands_hu=policy.bands_hu)
    strict = bool(getattr(policy, "strict", False) or options.strict)
    lesion_model = resolve_model(model)
    timings: dict[str, float] = {}
    warnings: list[str] = []

    t0 = time.perf_counter()
    if isinstance(image, Volume):
        volume, default_case = image, "volume"
    else:
        report("reading CT")
        volume = load_volume(Path(image))
        default_case = case_id_for(Path(image))
    volume = axial_slices_first(volume)
    grid = volume.grid
    spacing = tuple(float(s) for s in grid.spacing_mm)
    timings["load_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report("finding the heart")
    heart_in, aorta, heart_facts = _heart_input(heart, volume)
    warnings += [note for note in heart_facts.get("load_notes", []) if "resampled" in note]
    region = find_heart(volume, heart_in, segmenter=segmenter)
    heart_facts.update(source=region.source, volume_ml=region.volume_ml, notes=list(region.notes),
                       touches_fov=list(region.touches_fov))
    if region.touches_fov:
        warnings.append("the heart region reaches the edge of the field of view (" + ", ".join(region.touches_fov) +
                        "): part of the heart may be cut off and its calcium missed")
    heart_left_mm = heart_left_of_body_mm(volume.hu, region.mask, grid)
    heart_facts["heart_left_of_body_centre_mm"] = heart_left_mm
    if heart_left_mm is not None and heart_left_mm < -HEART_RIGHT_WARNING_MM:
        warnings.append(f"the heart lies {-heart_left_mm:.0f} mm to the patient's right of the body's centre: a "
                        "left-right flipped image (check the file's orientation) or dextrocardia; RCA / LAD / LCX "
                        "assignment assumes normal anatomy")
    timings["heart_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    hbox = ndi.find_objects(region.mask.astype(np.uint8))[0]
    box = heart_crop_box(region.mask, spacing, options.search_margin_mm)
    hu_crop = volume.hu[box]
    heart_crop = region.mask[box]
    stats = blood_pool_stats_hu(hu_crop, heart_crop)
    blood, noise_sd = stats if stats is not None else (None, None)
    heart_facts["blood_pool_median_hu"] = blood
    heart_facts["blood_pool_robust_sd_hu"] = noise_sd
    if blood is not None and blood > options.contrast_blood_pool_hu:
        if not force:
            raise MethodError(
                f"the heart blood pool has a median of {blood:.0f} HU (> {options.contrast_blood_pool_hu:g} HU): this "
                "looks like a contrast scan, where the 130 HU calcium rule does not apply; use --force to score anyway")
        warnings.append(f"contrast scan (blood pool median {blood:.0f} HU) scored with --force: calcium is overestimated")
    zone = search_zone(region.mask, spacing, options.search_margin_mm, box)
    with np.errstate(invalid="ignore"):
        metal_mm3 = float(((hu_crop >= options.metal_hu) & zone).sum() * grid.voxel_volume_mm3)
    if metal_mm3 >= options.metal_min_mm3:
        warnings.append(f"metal in or near the heart ({metal_mm3:.0f} mm³ ≥ {options.metal_hu:g} HU: wires, valves, "
                        "stents or leads): streaks may add or hide calcium; check the QC pictures")

    kvp = options.kvp_override if options.kvp_override is not None else volume.info.kvp
    bands, agatston_like, policy_facts = _bands(policy, kvp)
    if policy_facts.get("kv_note", "").startswith("kVp unknown"):
        warnings.append(policy_facts["kv_note"])
    threshold = bands[0]
    report("finding calcium candidates")
    cand = find_candidates(volume.hu, box, zone, spacing, threshold, min_area_mm2=options.min_area_mm2,
                           connectivity_2d=options.connectivity_2d, strict=strict,
                           inside_fraction=options.bone_inside_fraction, bone_min_mm3=options.bone_min_mm3)
    timings["candidates_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    report("assigning lesions to arteries")
    frame = heart_frame(volume.hu, grid, region.mask, hbox, aorta)
    if frame.aortic_root_lps_mm is None:
        warnings.append("aortic root not found: lesions near the root are judged by the heart frame only")
    surface = signed_surface_distance_mm(heart_crop, spacing)
    feats = lesion_features(cand.clusters, cand.n, hu_crop, surface, box, grid, frame,
                            40.0 if blood is None else blood, 15.0 if noise_sd is None else noise_sd)
    rule_cls, rule_conf = assign_rules(feats, frame, options.rules)
    if getattr(lesion_model, "method", None) == "seg3d":
        # 3-D segmentation backend: the artery with most predicted voxels (vascalc.coronary.seg3d_backend)
        proba, cls, conf = lesion_model.assign(hu_crop, spacing, cand.clusters, cand.n)
        how = "seg3d"
    elif lesion_model is not None and cand.n:
        proba = lesion_model.predict_proba(feats.matrix)
        # two questions: is it coronary (P(coronary) = 1 − P(none) against the threshold), and then
        # which artery (the most probable one) — a lesion torn between LAD and LCX is still coronary
        artery = 1 + np.argmax(proba[:, 1:], axis=1)
        coronary = 1.0 - proba[:, 0] >= options.model_min_probability
        cls = np.where(coronary, artery, 0)
        conf = np.where(coronary, proba[np.arange(cand.n), artery], proba[:, 0])
        how = "model"
    else:
        proba, cls, conf = None, rule_cls, rule_conf
        how = "rule" if lesion_model is None else "model"
    # metal (leads, wires, valves) is never calcium: a lesion peaking at metal HU is rejected [T]
    is_metal = feats.column("peak_hu") >= options.metal_hu if cand.n else np.zeros(0, dtype=bool)
    cls = np.where(is_metal, 0, cls)
    conf = np.where(is_metal, 1.0, conf)
    timings["assign_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    norm = slice_convention(options.slice_normalisation, spacing[0], volume.info.slice_thickness_mm)
    per = cluster_scores(cand.clusters, cand.lesions_2d, cand.n, hu_crop, spacing, bands)
    artery_of = np.r_[0, cls].astype(np.int64)
    arteries, total = artery_scores(per, artery_of, spacing, norm, agatston_like,
                                    options.mass_calibration_mg_per_cm3_per_hu)
    code = np.r_[0, np.where(cls > 0, cls, 4)].astype(np.uint8)
    lesion_map = np.zeros(grid.shape, dtype=np.uint8)
    lesion_map[box] = code[cand.clusters]
    voxel = grid.voxel_volume_mm3
    names = ("not_coronary",) + ARTERIES
    lesions = tuple(
        CoronaryLesion(
            id=i + 1, artery=names[int(cls[i])], counted=bool(cls[i] > 0), method=how, confidence=float(conf[i]),
            probabilities=None if proba is None else {CLASSES[k]: float(proba[i, k]) for k in range(len(CLASSES))},
            n_voxels=int(per["n_voxels"][i + 1]), volume_mm3=float(per["n_voxels"][i + 1] * voxel),
            agatston_raw=float(per["agatston_raw"][i + 1]), peak_hu=float(per["peak_hu"][i + 1]),
            mean_hu=float(per["hu_sum"][i + 1] / max(per["n_voxels"][i + 1], 1)),
            relative_mass_hu_mm3=float(per["hu_sum"][i + 1] * voxel), n_slices=int(feats.column("n_slices")[i]),
            centroid_lps_mm=tuple(float(v) for v in feats.centroid_lps_mm[i]),
            centroid_zyx=tuple(float(v) for v in feats.centroid_zyx[i]),
            surface_distance_mm=float(feats.column("surface_distance_mm")[i]), azimuth_deg=float(feats.azimuth_deg[i]),
            rule_artery=names[int(rule_cls[i])])
        for i in range(cand.n))
    timings["score_s"] = time.perf_counter() - t0
    n_rejected = int((cls == 0).sum()) if cand.n else 0
    method_info = {
        "policy": policy.name, **policy.to_dict(), "strict_effective": strict, "threshold_hu": threshold,
        "bands_hu": list(bands), **policy_facts, "agatston_like": agatston_like,
        "slice_normalisation": norm, "slice_normalisation_requested": options.slice_normalisation,
        "slice_thickness_mm": volume.info.slice_thickness_mm, "slice_increment_mm": spacing[0],
        "categories_use": "agatston_3mm", "risk_bands": "0 / 1-99 / 100-399 / >=400 (agatston_3mm)",
        "assignment": how, "model": None if lesion_model is None else lesion_model.info,
        "rules": options.rules.__dict__, "options": options.to_dict(),
        "candidates": {"n": cand.n, "n_rejected": n_rejected, "n_bone_components_removed": cand.n_bone_components,
                       "n_2d_lesions_below_min_area": cand.n_small_2d,
                       "n_rejected_as_metal": int(is_metal.sum())},
        "lm_merged_into_lad": True,
    }
    return CoronaryResult(
        case_id=case_id or default_case, volume=volume, heart_mask=region.mask, lesion_map=lesion_map,
        arteries=arteries, total=total, lesions=lesions, frame=frame.to_dict(), heart=heart_facts,
        method=method_info, warnings=tuple(warnings), timings_s=timings, cluster_labels=cand.clusters,
        cluster_box=box, features=feats.matrix)


#: One case of :func:`score_coronary_cohort` (``result`` is the ``result.json`` dict when ``ok``).
CoronaryCaseOutcome = ScoredCase


def score_coronary_cohort(inputs: Sequence[str | Path], output: str | Path, *, hearts: Sequence[str] = (),
                          qc: bool = True, progress: ProgressCallback | None = None, **score_options
                          ) -> list[CoronaryCaseOutcome]:
    """Score one or several chest CTs and write their outputs (as :func:`vascalc.api.score_ct_cohort`).

    One input: files straight into ``output``; a user error is raised and nothing is written.
    Several: one subfolder per case plus ``cohort.csv`` (one row per case and artery; failed cases
    one row with the reason), and the run goes on past failures.
    """
    from vascalc.coronary.outputs import write_coronary_outputs

    def score(path: Path, heart: Path | None, case_id: str, report) -> CoronaryResult:
        return score_coronary(path, heart=heart, case_id=case_id, progress=report, **score_options)

    return score_cases(inputs, hearts, output, case_id_for=case_id_for, score=score,
                       write=lambda result, folder: write_coronary_outputs(result, folder, qc=qc),
                       progress=progress, mask_option="--heart")


__all__ = ["CoronaryCaseOutcome", "CoronaryOptions", "CoronaryResult", "resolve_model", "score_coronary",
           "score_coronary_cohort"]
