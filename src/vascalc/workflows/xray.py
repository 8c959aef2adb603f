"""The lateral-radiograph job end to end: load → locate L1–L4 → grade 8 wall segments → AAC-24 (→ files).

Wiring only: images are read by :mod:`vascalc.imaging.radiograph`, landmarks come from a localiser
(:mod:`vascalc.radiograph.locate`, model-free) and grades from a grader
(:mod:`vascalc.radiograph.baseline`, model-free) through :mod:`vascalc.radiograph.kauppila`. A
learned localiser or grader plugs in by returning the same :class:`Localisation` /
:class:`~vascalc.radiograph.baseline.BaselineGrading`-shaped objects.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vascalc.imaging.radiograph import Radiograph, load_radiograph
from vascalc.radiograph.baseline import BaselineParams, grade_baseline
from vascalc.radiograph.kauppila import DEFAULT_BANDS, KauppilaResult, parse_bands, spine_geometry
from vascalc.radiograph.locate import Localisation, locate_vertebrae
from vascalc.radiograph.spacing import estimate_spacing_model_free, with_estimated_spacing
from vascalc.workflows.header import result_header

MODEL_ID = "model-free:profile_v1"


@dataclass(frozen=True, eq=False)
class AacResult:
    """One radiograph's AAC result; ``to_dict()`` is ``result.json`` (same top level as CT results).

    ``calcium_points_px`` (detected calcium, for the QC image) and ``timings_s`` stay out of the JSON.
    """

    case_id: str
    radiograph: Radiograph
    localisation: Localisation
    kauppila: KauppilaResult
    method: dict
    calcium_points_px: dict[str, np.ndarray] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    timings_s: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        rg, k = self.radiograph, self.kauppila
        return {
            **result_header("xray", self.case_id),
            "input": {
                "image": dict(rg.source),
                "geometry": {"shape_rows_cols": list(rg.shape),
                             "pixel_spacing_mm": None if rg.pixel_spacing_mm is None else list(rg.pixel_spacing_mm),
                             "facing": self.localisation.facing, "length_unit": k.geometry.unit},
                "notes": list(rg.notes),
            },
            "method": self.method,
            "landmarks": self.localisation.to_dict(),
            "geometry": k.geometry.to_dict(),
            "structures": [s.to_dict() for s in k.segments],
            "total": {"name": "total", "aac24": k.aac24, "aac8": k.aac8, "aac8_anterior": k.aac8_anterior,
                      "aac8_posterior": k.aac8_posterior, "affected_levels": k.affected_levels,
                      "affected_segments": k.affected_segments,
                      "calcified_length_anterior": k.calcified_length_anterior_mm,
                      "calcified_length_posterior": k.calcified_length_posterior_mm},
            "categories": {"aac24_severity": {"scheme": k.severity_scheme, "class": k.severity}},
            "warnings": list(self.warnings),
        }


def case_id_for(path: Path) -> str:
    """The file name without its extension (never a DICOM patient field)."""
    return Path(path).stem or Path(path).name


def radiograph_input(image: str | Path | Radiograph, pixel_spacing_mm: float | tuple[float, float] | None = None
                     ) -> tuple[Radiograph, str]:
    """The radiograph to score and its default case id (the file's stem; ``radiograph`` for an array)."""
    if isinstance(image, Radiograph):
        return image, "radiograph"
    return load_radiograph(image, pixel_spacing_mm=pixel_spacing_mm), case_id_for(Path(image))


def score_radiograph(image: str | Path | Radiograph, *, pixel_spacing_mm: float | tuple[float, float] | None = None,
                     facing: str = "auto", lowest_level: str = "L5", bands: str = DEFAULT_BANDS,
                     params: BaselineParams = BaselineParams(), case_id: str | None = None) -> AacResult:
    """AAC-24, AAC-8 and severity class of one lateral radiograph with the model-free pipeline.

    ``image``: a DICOM / PNG / JPEG / TIFF path or a loaded :class:`Radiograph`.
    ``facing``: ``auto`` | ``left`` | ``right``; ``bands``: severity preset or ``custom:…``
    (SCORING.md B.4). Nothing is written (see :func:`write_xray_outputs`). Without a spacing (a
    bitmap, no ``pixel_spacing_mm``) it is estimated from the vertebral pitch by the model-free
    localiser (:mod:`vascalc.radiograph.spacing`; ``method.pixel_spacing_estimate``, one warning).
    """
    parse_bands(bands)  # refuse bad bands before the work
    timings: dict[str, float] = {}
    start = time.perf_counter()
    rg, default_case = radiograph_input(image, pixel_spacing_mm)
    timings["load_s"] = time.perf_counter() - start
    spacing_warnings: tuple[str, ...] = ()
    estimate = None
    if rg.pixel_spacing_mm is None:
        # No fixed field of view fits every film (200–480 mm tall): the spacing is estimated from the
        # vertebral pitch (radiograph/spacing.py); the grader's wall band and every length rest on it.
        start = time.perf_counter()
        estimate = estimate_spacing_model_free(rg, facing=facing, lowest_level=lowest_level)
        rg = with_estimated_spacing(rg, estimate)
        spacing_warnings = (estimate.warning(),)
        timings["spacing_estimate_s"] = time.perf_counter() - start
    start = time.perf_counter()
    loc = locate_vertebrae(rg, facing=facing, lowest_level=lowest_level)
    timings["locate_s"] = time.perf_counter() - start
    start = time.perf_counter()
    spacing = rg.pixel_spacing_mm
    geometry = spine_geometry(loc.vertebrae, spacing)
    grading = grade_baseline(rg.with_facing(loc.facing), geometry, params, bands=bands)
    timings["grade_s"] = time.perf_counter() - start
    method = {"model_id": MODEL_ID, "localiser": loc.method, "grader": "wall_profile_baseline",
              "grader_params": dict(vars(grading.params)),
              "severity_scheme": grading.result.severity_scheme,
              "definition": "SCORING.md B.1-B.4"}
    if estimate is not None:
        method["pixel_spacing_estimate"] = estimate.to_dict()
    warnings = spacing_warnings + tuple(loc.warnings) + tuple(grading.result.warnings)
    return AacResult(case_id=case_id or default_case, radiograph=rg.with_facing(loc.facing), localisation=loc,
                     kauppila=grading.result, method=method, calcium_points_px=grading.calcium_points_px,
                     warnings=warnings, timings_s=timings)


def write_xray_outputs(result: AacResult, out_dir: Path, qc: bool = True) -> list[Path]:
    """Write ``result.json`` and (``qc``) ``qc.png`` into the existing folder ``out_dir``."""
    from vascalc.report.tables import write_json

    written = [write_json(result.to_dict(), Path(out_dir) / "result.json")]
    if qc:
        from vascalc.report.xray_qc import write_xray_qc

        written.append(write_xray_qc(result, Path(out_dir) / "qc.png"))
    return written
