"""Kauppila AAC-24 geometry and grading from L1–L4 landmarks and calcified wall intervals (SCORING.md B).

Pure functions, no image I/O. Coordinates: image pixels as (row, col); with a pixel spacing
(row_mm, col_mm) every length is in mm, without one in pixels (f and the grades are ratios and do
not depend on the unit). The geometry (:class:`SpineGeometry`) works in two axes derived from the
landmarks, so that either facing direction and a tilted spine are handled alike:

* ``t`` — position along the spinal axis (least-squares line through the L1–L4 body centres,
  B.2 step 2), increasing caudally, zero at the L1 centre;
* ``s`` — position along the anterior normal (towards the anterior corners), zero at the L1 centre.

Vertebra corners are ordered anterior-superior, posterior-superior, posterior-inferior,
anterior-inferior (as :class:`vascalc.phantoms.types.VertebraLandmark`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields

import numpy as np

from vascalc.errors import GeometryError, InputError
from vascalc.jsonable import to_jsonable
from vascalc.phantoms.radiograph import kauppila_grade
from vascalc.phantoms.types import VertebraLandmark

LEVELS = ("L1", "L2", "L3", "L4")
WALLS = ("anterior", "posterior")
SEGMENTS = tuple(f"{level}_{wall}" for level in LEVELS for wall in WALLS)
BOUNDARY_NAMES = ("T12/L1", "L1/L2", "L2/L3", "L3/L4", "L4/L5")

#: Severity band presets (SCORING.md B.4): (lowest AAC-24 of the band, label), ascending.
SEVERITY_PRESETS: dict[str, tuple[tuple[int, str], ...]] = {
    "low_moderate_high": ((0, "low"), (2, "moderate"), (6, "high")),
    "ge5": ((0, "not_high"), (5, "high")),
    "four_band_0_4_15": ((0, "none"), (1, "mild"), (5, "moderate"), (16, "severe")),
}
DEFAULT_BANDS = "low_moderate_high"

__all__ = ["BOUNDARY_NAMES", "KauppilaResult", "LEVELS", "SEGMENTS", "SEVERITY_PRESETS", "SegmentGrade", "anterior_border_at",
           "SpineGeometry", "VertebraLandmark", "aac8_points", "covered_length", "grade_fraction",
           "intervals_from_mask", "kauppila_grade", "parse_bands", "score_intervals", "score_masks",
           "segment_confidence", "severity_class", "spine_geometry", "split_mask_by_wall", "to_axis_coords",
           "to_image_coords"]


@dataclass(frozen=True)
class SpineGeometry:
    """Spinal frame and Kauppila level boundaries (SCORING.md B.2 steps 1–2).

    ``origin_mm``: L1 centre (row, col) in mm (pixels × spacing); ``axis``: unit (row, col) vector
    of the spinal axis pointing caudally; ``anterior``: unit normal pointing anteriorly.
    ``boundaries_mm``: t of T12/L1, L1/L2, L2/L3, L3/L4, L4/L5 (increasing); ``segment_heights_mm``
    H_k; ``body_heights_mm``: endplate-to-endplate height of L1–L4 along the axis;
    ``anterior_border_mm``: s of the anterior body border (mean of the two anterior corners) per
    level; ``centres_t_mm``: t of each body centre. ``unit`` is ``"mm"`` or ``"px"``.
    ``extrapolated``: the boundaries (``"T12/L1"``, ``"L4/L5"``) placed by extrapolation.
    """

    spacing_mm: tuple[float, float]
    unit: str
    origin_mm: tuple[float, float]
    axis: tuple[float, float]
    anterior: tuple[float, float]
    boundaries_mm: tuple[float, float, float, float, float]
    segment_heights_mm: tuple[float, float, float, float]
    body_heights_mm: tuple[float, float, float, float]
    anterior_border_mm: tuple[float, float, float, float]
    centres_t_mm: tuple[float, float, float, float]
    extrapolated: tuple[str, ...] = ()

    @property
    def mean_body_height_mm(self) -> float:
        return float(np.mean(self.body_heights_mm))

    def to_dict(self) -> dict:
        d = {f.name: to_jsonable(getattr(self, f.name)) for f in fields(self)}
        d["boundaries"] = dict(zip(BOUNDARY_NAMES, (float(b) for b in self.boundaries_mm)))
        return d


@dataclass(frozen=True)
class SegmentGrade:
    """One of the 8 Kauppila segments: covered fraction f, grade 0–3 (B.1) and a confidence 0–1."""

    name: str
    level: str
    wall: str
    fraction: float
    grade: int
    confidence: float
    top_mm: float
    bottom_mm: float
    height_mm: float
    covered_mm: float

    def to_dict(self) -> dict:
        return {f.name: to_jsonable(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class KauppilaResult:
    """AAC-24 (B.1), AAC-8 (B.3), affected counts and the severity class (B.4) of one image."""

    segments: tuple[SegmentGrade, ...]
    aac24: int
    aac8: int
    aac8_anterior: int
    aac8_posterior: int
    calcified_length_anterior_mm: float
    calcified_length_posterior_mm: float
    affected_levels: int
    affected_segments: int
    severity: str
    severity_scheme: str
    geometry: SpineGeometry
    warnings: tuple[str, ...] = ()

    @property
    def grades(self) -> dict[str, int]:
        return {s.name: s.grade for s in self.segments}

    @property
    def fractions(self) -> dict[str, float]:
        return {s.name: s.fraction for s in self.segments}

    def to_dict(self) -> dict:
        d = {f.name: to_jsonable(getattr(self, f.name)) for f in fields(self) if f.name not in ("segments", "geometry")}
        d["segments"] = [s.to_dict() for s in self.segments]
        d["geometry"] = self.geometry.to_dict()
        return d


def _by_name(vertebrae: Sequence | Mapping) -> dict[str, VertebraLandmark]:
    items = vertebrae.values() if isinstance(vertebrae, Mapping) else vertebrae
    return {v.name: v for v in items}


def spine_geometry(vertebrae: Sequence[VertebraLandmark] | Mapping[str, VertebraLandmark],
                   pixel_spacing_mm: tuple[float, float] | float | None = None) -> SpineGeometry:
    """Spinal axis and the five level boundaries from L1–L4 corners (T12 and L5 optional), B.2 steps 1–2.

    Boundary = midpoint between the inferior endplate centre of the upper body and the superior
    endplate centre of the lower body (endplate centre = mean of its two corners). When T12 or L5
    is absent the outer boundary lies half the mean visible disc height beyond L1's superior / L4's
    inferior endplate and is listed in ``extrapolated``. Raises :class:`GeometryError` when a level
    is missing, the levels are not in cranio-caudal order or the bodies overlap.
    """
    named = _by_name(vertebrae)
    missing = [lv for lv in LEVELS if lv not in named]
    if missing:
        raise GeometryError(f"Kauppila grading needs L1–L4; missing: {', '.join(missing)}")
    if pixel_spacing_mm is None:
        spacing, unit = (1.0, 1.0), "px"
    else:
        spacing = (float(pixel_spacing_mm),) * 2 if np.isscalar(pixel_spacing_mm) else tuple(map(float, pixel_spacing_mm))
        unit = "mm"
    sp = np.asarray(spacing, dtype=float)

    def corners_mm(name: str) -> np.ndarray:
        c = np.asarray(named[name].corners_px, dtype=float)
        if c.shape != (4, 2):
            raise GeometryError(f"{name}: four (row, col) corners are needed, got shape {c.shape}")
        return c * sp

    body = {name: corners_mm(name) for name in ("T12", *LEVELS, "L5") if name in named}
    centres = np.array([body[lv].mean(axis=0) for lv in LEVELS])
    # Least-squares line through the centres: the principal direction of the centred points.
    _, _, vt = np.linalg.svd(centres - centres.mean(axis=0))
    axis = vt[0] / np.linalg.norm(vt[0])
    if np.dot(centres[-1] - centres[0], axis) < 0:
        axis = -axis
    anterior = np.array([-axis[1], axis[0]])
    front = np.mean([(b[0] + b[3]) / 2 - (b[1] + b[2]) / 2 for b in body.values()], axis=0)
    if np.dot(front, anterior) < 0:
        anterior = -anterior
    origin = centres[0]

    def t_of(p: np.ndarray) -> float:
        return float(np.dot(p - origin, axis))

    sup = {n: t_of((b[0] + b[1]) / 2) for n, b in body.items()}
    inf = {n: t_of((b[2] + b[3]) / 2) for n, b in body.items()}
    order = [n for n in ("T12", *LEVELS, "L5") if n in body]
    for upper, lower in zip(order[:-1], order[1:]):
        if not inf[upper] <= sup[lower] + 1e-9 or not sup[upper] < inf[upper]:
            raise GeometryError(f"vertebrae {upper} and {lower} overlap or are out of cranio-caudal order; "
                                "check the landmarks")
    discs = {f"{u}/{lw}": (inf[u] + sup[lw]) / 2 for u, lw in zip(order[:-1], order[1:])}
    disc_heights = [sup[lw] - inf[u] for u, lw in zip(order[:-1], order[1:])]
    half_disc = 0.5 * float(np.mean(disc_heights))
    extrapolated = []
    top = discs.get("T12/L1")
    if top is None:
        top = sup["L1"] - half_disc
        extrapolated.append("T12/L1")
    bottom = discs.get("L4/L5")
    if bottom is None:
        bottom = inf["L4"] + half_disc
        extrapolated.append("L4/L5")
    bounds = (top, discs["L1/L2"], discs["L2/L3"], discs["L3/L4"], bottom)
    border = tuple(float(np.dot((body[lv][0] + body[lv][3]) / 2 - origin, anterior)) for lv in LEVELS)
    return SpineGeometry(spacing_mm=tuple(spacing), unit=unit, origin_mm=tuple(map(float, origin)),
                         axis=tuple(map(float, axis)), anterior=tuple(map(float, anterior)),
                         boundaries_mm=tuple(float(b) for b in bounds),
                         segment_heights_mm=tuple(float(b - a) for a, b in zip(bounds[:-1], bounds[1:])),
                         body_heights_mm=tuple(float(inf[lv] - sup[lv]) for lv in LEVELS),
                         anterior_border_mm=border, centres_t_mm=tuple(t_of(c) for c in centres),
                         extrapolated=tuple(extrapolated))


def to_axis_coords(geometry: SpineGeometry, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel (row, col) → (t, s) in the geometry's unit (mm or px)."""
    p_r = np.asarray(rows, dtype=float) * geometry.spacing_mm[0] - geometry.origin_mm[0]
    p_c = np.asarray(cols, dtype=float) * geometry.spacing_mm[1] - geometry.origin_mm[1]
    t = p_r * geometry.axis[0] + p_c * geometry.axis[1]
    s = p_r * geometry.anterior[0] + p_c * geometry.anterior[1]
    return t, s


def to_image_coords(geometry: SpineGeometry, t: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(t, s) → pixel (row, col); the inverse of :func:`to_axis_coords`."""
    t, s = np.asarray(t, dtype=float), np.asarray(s, dtype=float)
    r = geometry.origin_mm[0] + t * geometry.axis[0] + s * geometry.anterior[0]
    c = geometry.origin_mm[1] + t * geometry.axis[1] + s * geometry.anterior[1]
    return r / geometry.spacing_mm[0], c / geometry.spacing_mm[1]


def anterior_border_at(geometry: SpineGeometry, t: np.ndarray) -> np.ndarray:
    """s of the anterior vertebral border at axial positions t (linear between body centres)."""
    return np.interp(t, geometry.centres_t_mm, geometry.anterior_border_mm)


def covered_length(starts: np.ndarray, ends: np.ndarray, lo: float, hi: float) -> float:
    """Length of the union of intervals [starts, ends] clipped to [lo, hi] (vectorised sort-and-merge)."""
    a = np.clip(np.asarray(starts, dtype=float), lo, hi)
    b = np.clip(np.asarray(ends, dtype=float), lo, hi)
    keep = b > a
    if not keep.any():
        return 0.0
    order = np.argsort(a[keep], kind="stable")
    a, b = a[keep][order], b[keep][order]
    reach = np.maximum.accumulate(b)
    # Each interval adds what sticks out past the furthest end reached by the intervals before it.
    prev = np.concatenate(([a[0]], reach[:-1]))
    return float(np.sum(np.clip(b - np.maximum(a, prev), 0.0, None)))


def intervals_from_mask(mask: np.ndarray, geometry: SpineGeometry) -> tuple[np.ndarray, np.ndarray]:
    """Project every calcified pixel (a spacing-sized square) onto the spinal axis: (t_start, t_end)."""
    rows, cols = np.nonzero(np.asarray(mask, dtype=bool))
    t, _ = to_axis_coords(geometry, rows, cols)
    half = 0.5 * (abs(geometry.axis[0]) * geometry.spacing_mm[0] + abs(geometry.axis[1]) * geometry.spacing_mm[1])
    return t - half, t + half


def split_mask_by_wall(mask: np.ndarray, geometry: SpineGeometry, centreline_offset_mm: float
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Split a calcification mask into (anterior, posterior) walls (B.2 step 3) for a radiograph.

    The aortic centreline is taken parallel to the anterior vertebral border, ``centreline_offset_mm``
    in front of it (in the geometry's unit); pixels farther from the spine are the anterior wall.
    """
    m = np.asarray(mask, dtype=bool)
    rows, cols = np.nonzero(m)
    t, s = to_axis_coords(geometry, rows, cols)
    anterior_sel = s - anterior_border_at(geometry, t) > centreline_offset_mm
    ant = np.zeros_like(m)
    post = np.zeros_like(m)
    ant[rows[anterior_sel], cols[anterior_sel]] = True
    post[rows[~anterior_sel], cols[~anterior_sel]] = True
    return ant, post


def grade_fraction(fraction: float) -> int:
    """B.1 grade of f (phantoms' :func:`kauppila_grade`), with f nudged up by 1e-9 so that an f of
    exactly 1/3 or 2/3 reached through floating-point arithmetic (10/30 …) is graded upwards, as
    B.2 step 5 requires; f = 0 stays grade 0."""
    f = float(fraction)
    return kauppila_grade(f + 1e-9) if f > 0 else 0


def segment_confidence(fraction: float) -> float:
    """Confidence 0.5–1 of a grade from how far f lies from the nearest grade boundary (0, 1/3, 2/3) [T].

    A margin of 1/6 (half a grade band) or more gives 1; an f on a boundary gives 0.5. f = 0 is
    taken as certain for the grading step (detection uncertainty is the grader's to report).
    """
    f = float(fraction)
    if f <= 0:
        return 1.0
    margin = min(abs(f - b) for b in (0.0, 1.0 / 3.0, 2.0 / 3.0))
    return round(0.5 + 0.5 * min(1.0, margin / (1.0 / 6.0)), 4)


def aac8_points(calcified_length: float, vertebral_height: float) -> int:
    """AAC-8 points of one wall (B.3): 0 none, 1 ≤ 1 height, 2 ≤ 2, 3 ≤ 3, 4 > 3 vertebral heights."""
    if calcified_length <= 0:
        return 0
    if vertebral_height <= 0:
        raise GeometryError("vertebral height must be positive for AAC-8")
    ratio = round(calcified_length / vertebral_height, 9)
    return 1 if ratio <= 1 else 2 if ratio <= 2 else 3 if ratio <= 3 else 4


def parse_bands(bands: str | Sequence[tuple[int, str]]) -> tuple[str, tuple[tuple[int, str], ...]]:
    """Severity bands: a preset name (B.4), ``"custom:0=low,2=moderate,6=high"`` or a sequence of
    (lowest AAC-24, label). Returns (scheme name, ascending bands starting at 0)."""
    if isinstance(bands, str):
        if bands in SEVERITY_PRESETS:
            return bands, SEVERITY_PRESETS[bands]
        if bands.startswith("custom:"):
            try:
                parsed = tuple((int(k), v.strip()) for k, v in (item.split("=", 1) for item in bands[7:].split(",")))
            except ValueError:
                raise InputError(f"custom bands must look like 'custom:0=low,2=moderate,6=high', got {bands!r}") from None
            return _check_bands("custom", parsed)
        raise InputError(f"unknown severity bands {bands!r}; use one of {', '.join(SEVERITY_PRESETS)} or 'custom:…'")
    return _check_bands("custom", tuple((int(a), str(b)) for a, b in bands))


def _check_bands(name: str, bands: tuple[tuple[int, str], ...]) -> tuple[str, tuple[tuple[int, str], ...]]:
    lows = [b[0] for b in bands]
    if not bands or lows[0] != 0 or any(b <= a for a, b in zip(lows[:-1], lows[1:])) or lows[-1] > 24:
        raise InputError(f"severity bands must start at 0 and increase strictly within 0–24, got {lows}")
    return name, bands


def severity_class(aac24: int, bands: str | Sequence[tuple[int, str]] = DEFAULT_BANDS) -> str:
    """Label of the band holding ``aac24`` (B.4; each band includes its lower bound)."""
    _, parsed = parse_bands(bands)
    label = parsed[0][1]
    for low, name in parsed:
        if aac24 >= low:
            label = name
    return label


def score_intervals(geometry: SpineGeometry, intervals: Mapping[str, tuple[np.ndarray, np.ndarray]], *,
                    bands: str | Sequence[tuple[int, str]] = DEFAULT_BANDS,
                    confidences: Mapping[str, float] | None = None) -> KauppilaResult:
    """Kauppila grades from calcified t-intervals per wall (B.2 steps 4–5, B.3, B.4).

    ``intervals``: ``{"anterior": (starts, ends), "posterior": (starts, ends)}`` in the geometry's
    unit along the spinal axis. ``confidences`` (optional, per segment name, 0–1) are multiplied into
    the grading confidence of :func:`segment_confidence` (e.g. a detector's own certainty).
    """
    scheme, parsed = parse_bands(bands)
    b = geometry.boundaries_mm
    segments: list[SegmentGrade] = []
    lengths = {}
    for wall in WALLS:
        starts, ends = intervals.get(wall, (np.zeros(0), np.zeros(0)))
        lengths[wall] = covered_length(starts, ends, b[0], b[-1])
    for k, level in enumerate(LEVELS):
        for wall in WALLS:
            starts, ends = intervals.get(wall, (np.zeros(0), np.zeros(0)))
            covered = covered_length(starts, ends, b[k], b[k + 1])
            f = covered / geometry.segment_heights_mm[k]
            name = f"{level}_{wall}"
            conf = segment_confidence(f) * (1.0 if confidences is None else float(confidences.get(name, 1.0)))
            segments.append(SegmentGrade(name=name, level=level, wall=wall, fraction=round(f, 6),
                                         grade=grade_fraction(f), confidence=round(conf, 4),
                                         top_mm=b[k], bottom_mm=b[k + 1], height_mm=geometry.segment_heights_mm[k],
                                         covered_mm=round(covered, 6)))
    aac24 = int(sum(s.grade for s in segments))
    height = geometry.mean_body_height_mm
    a_pts, p_pts = aac8_points(lengths["anterior"], height), aac8_points(lengths["posterior"], height)
    missing = {"T12/L1": "T12", "L4/L5": "L5"}
    warnings = [f"{name} boundary extrapolated by half the mean disc height ({missing[name]} not located)"
                for name in geometry.extrapolated]
    return KauppilaResult(
        segments=tuple(segments), aac24=aac24, aac8=a_pts + p_pts, aac8_anterior=a_pts, aac8_posterior=p_pts,
        calcified_length_anterior_mm=round(lengths["anterior"], 6),
        calcified_length_posterior_mm=round(lengths["posterior"], 6),
        affected_levels=int(sum(any(s.grade > 0 for s in segments if s.level == lv) for lv in LEVELS)),
        affected_segments=int(sum(s.grade > 0 for s in segments)),
        severity=severity_class(aac24, parsed), severity_scheme=scheme, geometry=geometry, warnings=tuple(warnings))


def score_masks(geometry: SpineGeometry, anterior_mask: np.ndarray, posterior_mask: np.ndarray, *,
                bands: str | Sequence[tuple[int, str]] = DEFAULT_BANDS,
                confidences: Mapping[str, float] | None = None) -> KauppilaResult:
    """Kauppila grades from per-wall calcification masks on the image grid (B.2 steps 4–5)."""
    if np.shape(anterior_mask) != np.shape(posterior_mask):
        raise InputError("the anterior and posterior wall masks must have the same shape")
    return score_intervals(geometry, {"anterior": intervals_from_mask(anterior_mask, geometry),
                                      "posterior": intervals_from_mask(posterior_mask, geometry)},
                           bands=bands, confidences=confidences)
