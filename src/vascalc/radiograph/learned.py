"""Learned AAC-24 grading of a radiograph with a model folder (default: the bundled demo model).

Wiring between :mod:`vascalc.learn.aac` (the networks; needs PyTorch + MONAI) and the Kauppila
result of :mod:`vascalc.radiograph.kauppila`: the fold ensemble's CORAL probabilities give each of
the 8 segments its grade (SCORING.md B.1) and a confidence = the ensemble's probability of that
grade, P(g) = P(grade > g − 1) − P(grade > g). A learned grader predicts grades, not the covered
fraction f, so ``fraction`` is reported as ``None`` and AAC-8 (B.3, needs calcified lengths) is
estimated from the grades with each grade's mid-band fraction (1/6, 1/2, 5/6) — flagged in the
warnings. Without PyTorch the model-free baseline grades instead, and the result says so.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vascalc.errors import GeometryError, InputError
from vascalc.radiograph.kauppila import (
    DEFAULT_BANDS,
    LEVELS,
    SEGMENTS,
    KauppilaResult,
    SegmentGrade,
    SpineGeometry,
    aac8_points,
    parse_bands,
    severity_class,
)

#: Folder of the bundled demo model (package data; trained on synthetic films only, see MODEL_CARD.md).
BUNDLED_MODEL = Path(__file__).resolve().parent / "models" / "aac_demo"
#: Mid-band covered fraction of each grade, for the AAC-8 length estimate [T].
MID_FRACTION = (0.0, 1.0 / 6.0, 0.5, 5.0 / 6.0)


@dataclass(frozen=True)
class LearnedGrading:
    """Grades of one film by a model folder: the Kauppila result, the ensemble's P(grade > k) per
    segment, the whole-score regressor's AAC-24 (``None`` without a regressor) and the model id."""

    result: KauppilaResult
    probabilities: dict[str, list[float]]
    regressor_aac24: float | None
    model_id: str


def model_id(model_dir: str | Path) -> str:
    """``learned:<folder name>:<model.json id or n_train>`` — names the model in results."""
    folder = Path(model_dir)
    try:
        meta = json.loads((folder / "model.json").read_text())
    except (OSError, ValueError):
        raise InputError(f"{folder} is not an AAC model folder (no readable model.json)") from None
    return f"learned:{folder.name}:{meta.get('model_id', 'n_train=' + str(meta.get('n_train')))}"


def grade_probabilities_to_confidence(prob_gt: np.ndarray, grades: np.ndarray) -> np.ndarray:
    """Probability of the predicted grade from CORAL's P(grade > k), k = 0…2: P(g) = P(>g−1) − P(>g)."""
    p = np.asarray(prob_gt, dtype=float)
    ext = np.concatenate([np.ones(p.shape[:-1] + (1,)), p, np.zeros(p.shape[:-1] + (1,))], axis=-1)
    g = np.asarray(grades, dtype=int)
    return np.take_along_axis(ext, g[..., None], -1)[..., 0] - np.take_along_axis(ext, g[..., None] + 1, -1)[..., 0]


def kauppila_from_grades(geometry: SpineGeometry, grades: dict[str, int], confidences: dict[str, float], *,
                         bands=DEFAULT_BANDS) -> KauppilaResult:
    """A :class:`KauppilaResult` from per-segment grades (B.1 sum, B.4 class; B.3 AAC-8 estimated)."""
    scheme, parsed = parse_bands(bands)
    b = geometry.boundaries_mm
    segs, length = [], {"anterior": 0.0, "posterior": 0.0}
    for k, level in enumerate(LEVELS):
        for wall in ("anterior", "posterior"):
            name = f"{level}_{wall}"
            g = int(grades[name])
            if not 0 <= g <= 3:
                raise InputError(f"grade of {name} must be 0–3, got {g}")
            length[wall] += MID_FRACTION[g] * geometry.segment_heights_mm[k]
            segs.append(SegmentGrade(name=name, level=level, wall=wall, fraction=None, grade=g,
                                     confidence=round(float(confidences[name]), 4), top_mm=b[k], bottom_mm=b[k + 1],
                                     height_mm=geometry.segment_heights_mm[k], covered_mm=None))
    aac24 = int(sum(s.grade for s in segs))
    height = geometry.mean_body_height_mm
    a_pts, p_pts = aac8_points(length["anterior"], height), aac8_points(length["posterior"], height)
    warnings = ("AAC-8 estimated from the learned grades (mid-band covered fraction per grade); "
                "a learned grader does not measure calcified lengths",)
    return KauppilaResult(segments=tuple(segs), aac24=aac24, aac8=a_pts + p_pts, aac8_anterior=a_pts,
                          aac8_posterior=p_pts, calcified_length_anterior_mm=round(length["anterior"], 3),
                          calcified_length_posterior_mm=round(length["posterior"], 3),
                          affected_levels=int(sum(any(s.grade > 0 for s in segs if s.level == lv) for lv in LEVELS)),
                          affected_segments=int(sum(s.grade > 0 for s in segs)),
                          severity=severity_class(aac24, parsed), severity_scheme=scheme, geometry=geometry,
                          warnings=warnings)


def grade_learned(image: np.ndarray, geometry: SpineGeometry, model_dir: str | Path | None = None, *,
                  bands=DEFAULT_BANDS, ensemble=None) -> LearnedGrading:
    """Grade the 8 segments of ``image`` (2-D, bone bright) in the spine frame ``geometry`` (mm)
    with the fold ensemble in ``model_dir`` (default :data:`BUNDLED_MODEL`)."""
    from vascalc.learn.aac import load_aac_ensemble, predict_aac24_regression, predict_grades

    folder = Path(model_dir) if model_dir is not None else BUNDLED_MODEL
    ens = ensemble if ensemble is not None else load_aac_ensemble(folder)
    grades, prob = predict_grades(ens, image, geometry, geometry.spacing_mm)
    p = np.array([prob[s] for s in SEGMENTS])
    conf = grade_probabilities_to_confidence(p, np.array([grades[s] for s in SEGMENTS]))
    result = kauppila_from_grades(geometry, grades, dict(zip(SEGMENTS, conf)), bands=bands)
    reg = predict_aac24_regression(ens, image, geometry, geometry.spacing_mm) if ens.regressors else None
    return LearnedGrading(result=result, probabilities=prob, regressor_aac24=None if reg is None else round(reg, 3),
                          model_id=model_id(folder))


def score_radiograph_learned(image, *, model_dir: str | Path | None = None, pixel_spacing_mm=None,
                             facing: str = "auto", lowest_level: str = "L5", bands: str = DEFAULT_BANDS,
                             case_id: str | None = None):
    """AAC-24 of one film with a model folder (default: the bundled demo model), as
    :func:`vascalc.workflows.xray.score_radiograph` does with the model-free pipeline.

    Landmarks: the folder's learned corner localiser (``localiser.json``) when it has one, else the
    model-free localiser; the fold ensemble then grades the 8 segments. Without PyTorch/MONAI the
    model-free pipeline runs instead and the result says so (``method.learned_model_unavailable``
    and a warning). Spacing unknown (a bitmap without ``pixel_spacing_mm``): estimated from the
    vertebral pitch with the same localiser (:mod:`vascalc.radiograph.spacing`), recorded in
    ``method.pixel_spacing_estimate`` and warned once."""
    import time

    from vascalc.learn._deps import learn_available
    from vascalc.radiograph.kauppila import spine_geometry
    from vascalc.radiograph.locate import Localisation, locate_vertebrae
    from vascalc.radiograph.spacing import estimate_pixel_spacing, estimate_spacing_model_free, with_estimated_spacing
    from vascalc.workflows.xray import AacResult, radiograph_input, score_radiograph

    parse_bands(bands)
    folder = Path(model_dir) if model_dir is not None else BUNDLED_MODEL
    if not learn_available():
        base = score_radiograph(image, pixel_spacing_mm=pixel_spacing_mm, facing=facing, lowest_level=lowest_level,
                                bands=bands, case_id=case_id)
        note = "PyTorch/MONAI not installed: graded with the model-free baseline instead of the learned model"
        return dataclasses.replace(base, warnings=base.warnings + (note,),
                                   method={**base.method, "learned_model_unavailable": note})
    meta_path = folder / "model.json"
    if not meta_path.is_file():
        raise InputError(f"{folder} is not an AAC model folder (no model.json); train one with 'vascalc train xray'")
    if int(json.loads(meta_path.read_text()).get("n_graders", 0)) == 0:
        # a model trained on AAC-24 totals has no segment grader: segments come from the model-free
        # pipeline and the learned total is reported beside them
        from vascalc.learn.aac import load_aac_ensemble, predict_aac24_regression

        base = score_radiograph(image, pixel_spacing_mm=pixel_spacing_mm, facing=facing, lowest_level=lowest_level,
                                bands=bands, case_id=case_id)
        total = predict_aac24_regression(load_aac_ensemble(folder), base.radiograph.image, base.kauppila.geometry,
                                         base.kauppila.geometry.spacing_mm)
        note = ("this model was trained on AAC-24 totals only: segments graded model-free; the learned total is "
                f"method.regressor_aac24 = {total:.1f}")
        return dataclasses.replace(base, warnings=base.warnings + (note,),
                                   method={**base.method, "regressor_model_id": model_id(folder),
                                           "regressor_aac24": round(total, 3)})
    timings: dict[str, float] = {}
    start = time.perf_counter()
    rg, default_case = radiograph_input(image, pixel_spacing_mm)
    timings["load_s"] = time.perf_counter() - start
    warnings: list[str] = []
    has_localiser = (folder / "localiser.json").is_file()
    if has_localiser:
        from vascalc.learn.aac_localiser import (check_landmarks, load_localiser, locate_learned, place_corners,
                                                 repair_heights)

        loc_model = load_localiser(folder)
    estimate = None
    if rg.pixel_spacing_mm is None:
        # no fixed field of view fits every film (200–480 mm tall): estimate the spacing from the
        # vertebral pitch with the localiser that will place the landmarks (radiograph/spacing.py)
        start = time.perf_counter()
        if has_localiser:
            estimate = estimate_pixel_spacing(rg.shape, lambda s: locate_learned(loc_model, rg.image, s, refine=False),
                                              localiser=f"learned:{folder.name}", levels=("L1", "L2", "L3", "L4"))
        else:
            estimate = estimate_spacing_model_free(rg, facing=facing, lowest_level=lowest_level)
        rg = with_estimated_spacing(rg, estimate)
        warnings.append(estimate.warning())
        timings["spacing_estimate_s"] = time.perf_counter() - start
    spacing = rg.pixel_spacing_mm
    start = time.perf_counter()
    flagged_levels: tuple[str, ...] = ()
    landmark_check = None
    if has_localiser:
        vertebrae = locate_learned(loc_model, rg.image, spacing, refine=False)
        repaired_levels: list[str] = []
        if loc_model.refine_edges:
            # what locate_learned does by default, in two steps so that re-placed bodies are reported
            fixed = repair_heights(vertebrae, spacing)
            repaired_levels = [a.name for a, b in zip(vertebrae, fixed) if a.corners_px != b.corners_px]
            # edge snapping and, if the folder has one, the local corner stage (round 16)
            vertebrae = place_corners(loc_model, rg.image, spacing, fixed)
            if repaired_levels:
                warnings.append("learned localiser: implausible body height at " + ", ".join(repaired_levels)
                                + "; that endplate was re-placed one median body height from the other and snapped "
                                  "to the film's edge")
        l1 = np.asarray(next(v for v in vertebrae if v.name == "L1").corners_px)
        found = "left" if (l1[0, 1] + l1[3, 1]) < (l1[1, 1] + l1[2, 1]) else "right"
        if facing != "auto" and facing != found:
            warnings.append(f"the learned localiser found the patient facing {found}, not {facing} as given")
        # the corners were snapped to the film's endplate / anterior-border edges unless the model says not to
        method = "learned_corner_heatmaps_edge_refined" if loc_model.refine_edges else "learned_corner_heatmaps_v1"
        if loc_model.refine_edges and loc_model.local is not None:
            method = "learned_corner_heatmaps_local_stage"
        loc = Localisation(vertebrae=vertebrae, facing=found, method=method)
        check = check_landmarks(loc.vertebrae, spacing)
        # the check of the LEARNED landmarks; "landmarks_used" says which set was graded
        landmark_check = {"ok": check.ok, "problems": list(check.problems), "flagged_levels": list(check.flagged_levels),
                          "landmarks_used": "learned", "repaired_levels": repaired_levels}
        try:
            geometry = spine_geometry(loc.vertebrae, spacing)
        except GeometryError as error:
            # implausible learned landmarks (bodies overlapping): the model-free localiser decides
            warnings.append(f"learned localiser gave implausible landmarks ({error}); used the model-free localiser")
            loc = locate_vertebrae(rg, facing=facing, lowest_level=lowest_level)
            geometry = spine_geometry(loc.vertebrae, spacing)
            landmark_check["landmarks_used"] = "model-free"
        else:
            if not check.ok:
                # a body failed the geometric check (a corner on the neighbouring endplate, a mirrored
                # body): keep the learned landmarks unless the model-free localiser passes the check
                try:
                    alt = locate_vertebrae(rg, facing=facing, lowest_level=lowest_level)
                    alt_ok = check_landmarks(alt.vertebrae, spacing).ok
                    alt_geometry = spine_geometry(alt.vertebrae, spacing) if alt_ok else None
                except GeometryError:
                    alt_ok = False
                if alt_ok:
                    warnings.append("learned landmarks failed the geometric check (" + "; ".join(check.problems)
                                    + "); used the model-free localiser, which passed it")
                    loc, geometry = alt, alt_geometry
                    landmark_check["landmarks_used"] = "model-free"
                else:
                    flagged_levels = check.flagged_levels
                    warnings.append("learned landmarks failed the geometric check (" + "; ".join(check.problems)
                                    + "); kept them, and halved the confidence of the segments of "
                                    + ", ".join(flagged_levels))
    else:
        loc = locate_vertebrae(rg, facing=facing, lowest_level=lowest_level)
        geometry = spine_geometry(loc.vertebrae, spacing)
    timings["locate_s"] = time.perf_counter() - start
    start = time.perf_counter()
    graded = grade_learned(rg.image, geometry, folder, bands=bands)
    if flagged_levels:
        # the grade of a segment whose vertebral body is implausibly placed is less trustworthy than
        # the grader's probability says: its confidence is halved (docs/radiograph.md, landmark check)
        segs = tuple(dataclasses.replace(sg, confidence=round(sg.confidence * 0.5, 4)) if sg.level in flagged_levels
                     else sg for sg in graded.result.segments)
        graded = dataclasses.replace(graded, result=dataclasses.replace(graded.result, segments=segs))
    timings["grade_s"] = time.perf_counter() - start
    # the decision rule used: calibrated thresholds τ_k from model.json (learn.aac.calibrate_aac), else CORAL's 0.5
    from vascalc.learn.aac import grader_tta_method

    meta = json.loads(meta_path.read_text())
    calibration = meta.get("calibration") or {}
    method = {"model_id": graded.model_id, "localiser": loc.method, "grader": "coral_ensemble",
              "grade_thresholds": calibration.get("thresholds", [0.5, 0.5, 0.5]),
              # test-time augmentation of the grader (model.json["inference"]["grader_tta"], default on)
              "grader_inference": grader_tta_method(meta),
              "model_path": "bundled" if model_dir is None else folder.name,
              "segment_probabilities_gt": graded.probabilities, "regressor_aac24": graded.regressor_aac24,
              "severity_scheme": graded.result.severity_scheme, "definition": "SCORING.md B.1-B.4"}
    if landmark_check is not None:
        method["landmark_check"] = landmark_check
    if estimate is not None:
        method["pixel_spacing_estimate"] = estimate.to_dict()
    return AacResult(case_id=case_id or default_case, radiograph=rg.with_facing(loc.facing), localisation=loc,
                     kauppila=graded.result, method=method,
                     warnings=tuple(warnings) + tuple(loc.warnings) + graded.result.warnings, timings_s=timings)


__all__ = ["BUNDLED_MODEL", "LearnedGrading", "grade_learned", "grade_probabilities_to_confidence",
           "kauppila_from_grades", "model_id", "score_radiograph_learned"]
