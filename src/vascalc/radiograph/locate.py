"""Model-free L1–L4 localiser for lateral radiographs (intensity profiles, no training).

Steps (all at a 1 mm working grid, so that the sizes below are anatomical):

1. A horizontal white top-hat (image minus its 60 mm grey opening along each row) removes the soft-tissue
   profile of the abdomen and keeps bone columns narrower than that.
2. Spine column: the column band ``body_depth_mm`` wide with the largest mean high-pass over all
   rows (the vertebral bodies are the widest dense column; the posterior elements are thinner).
3. Facing: the posterior elements (pedicles, processes) add bone behind the bodies, so the side of
   the band with less high-pass signal within 20–50 mm is anterior.
4. Levels: the row profile of the high-pass inside the band alternates bright bodies / dark discs;
   disc centres are its smoothed local minima ≥ ``min_body_mm`` apart. The longest run of
   regularly spaced bodies is the lumbar chain; its lowest complete body is taken as L5
   (``lowest_level``), the four above it are L4…L1, and T12 is the next one up when present.
5. Each body's endplates are the half-maximum crossings of the row profile between the body and
   its discs, its anterior / posterior borders the half-maximum crossings of its column profile.

This is a baseline for comparison with the learned localisers; it assumes a roughly vertical lumbar
spine (tilt ≲ 15°) and the lumbosacral junction in the image, and says so in its warnings.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage, signal

from vascalc.errors import GeometryError, InputError
from vascalc.imaging.radiograph import Radiograph
from vascalc.phantoms.types import VertebraLandmark

WORK_MM = 1.0
#: Assumed vertical field of view when the pixel spacing is unknown (a lumbar film is ~ 35–43 cm).
ASSUMED_FOV_MM = 380.0
ORDER = ("T12", "L1", "L2", "L3", "L4", "L5")


@dataclass(frozen=True)
class Localisation:
    """L1–L4 (and T12 / L5 where found) in image pixels, the facing direction and notes."""

    vertebrae: tuple[VertebraLandmark, ...]
    facing: str
    method: str
    warnings: tuple[str, ...] = ()

    def by_name(self) -> dict[str, VertebraLandmark]:
        return {v.name: v for v in self.vertebrae}

    def to_dict(self) -> dict:
        return {"method": self.method, "facing": self.facing, "warnings": list(self.warnings),
                "vertebrae": {v.name: {"corners_px": [list(c) for c in v.corners_px], "centre_px": list(v.centre_px)}
                              for v in self.vertebrae}}


def _half_crossing(profile: np.ndarray, start: int, stop: int, level: float) -> float:
    """Sub-pixel index where ``profile`` first falls below ``level`` walking from ``start`` towards
    ``stop`` (inclusive); ``stop`` itself when it never does."""
    step = 1 if stop >= start else -1
    idx = np.arange(start, stop + step, step)
    below = np.nonzero(profile[idx] < level)[0]
    if below.size == 0 or below[0] == 0:
        return float(stop if below.size == 0 else start)
    j, i = idx[below[0]], idx[below[0] - 1]
    a, b = profile[i], profile[j]
    return float(i + step * (a - level) / (a - b))


def locate_vertebrae(radiograph: Radiograph, *, facing: str = "auto", lowest_level: str = "L5",
                     body_depth_mm: float = 30.0, min_body_mm: float = 22.0) -> Localisation:
    """Find the L1–L4 bodies (corners AS, PS, PI, AI in pixels) of a lateral radiograph, model-free.

    ``facing``: ``"auto"`` (from the posterior elements), ``"left"`` or ``"right"``.
    ``lowest_level``: name of the lowest complete body of the detected chain (``"L5"`` on lumbar
    films, ``"L4"`` when the image stops above L5). Raises :class:`GeometryError` when fewer than
    four regularly spaced bodies are found.
    """
    if facing not in ("auto", "left", "right"):
        raise InputError(f"facing must be 'auto', 'left' or 'right', got {facing!r}")
    if lowest_level not in ("L4", "L5"):
        raise InputError(f"lowest_level must be 'L4' or 'L5', got {lowest_level!r}")
    warnings: list[str] = []
    image = radiograph.image.astype(np.float32)
    if radiograph.pixel_spacing_mm is None:
        spacing = (ASSUMED_FOV_MM / image.shape[0],) * 2
        warnings.append(f"pixel spacing unknown: localiser assumed a {ASSUMED_FOV_MM:.0f} mm tall field of view")
    else:
        spacing = radiograph.pixel_spacing_mm
    zoom = (spacing[0] / WORK_MM, spacing[1] / WORK_MM)
    work = ndimage.zoom(image, zoom, order=1, prefilter=False)
    # A row-wise white top-hat (not a mean high-pass): the skin edge is a step, which an opening
    # keeps and the top-hat therefore removes, while bone columns narrower than 60 mm stand out.
    highpass = ndimage.white_tophat(work, size=(1, int(60 / WORK_MM)))
    depth = int(round(body_depth_mm / WORK_MM))
    column_profile = ndimage.uniform_filter1d(highpass.mean(axis=0), depth, mode="nearest")
    centre_col = int(np.argmax(column_profile))

    if facing == "auto":
        facing = _facing_from_outline(work, centre_col)
    if facing == "right":
        # Work in one canonical orientation (anterior on the left) so that a mirrored film gives
        # exactly the mirrored landmarks; columns are mirrored back at the end.
        mirrored = locate_vertebrae(replace(radiograph, image=radiograph.image[:, ::-1]), facing="left",
                                    lowest_level=lowest_level, body_depth_mm=body_depth_mm, min_body_mm=min_body_mm)
        last = image.shape[1] - 1
        flipped = tuple(VertebraLandmark(v.name, tuple((r, round(last - c, 3)) for r, c in v.corners_px),
                                         (v.centre_px[0], round(last - v.centre_px[1], 3))) for v in mirrored.vertebrae)
        return replace(mirrored, vertebrae=flipped, facing="right")

    # Disc valleys: how much darker each row of the band is than the rows ``half_gap`` above and
    # below (a band-pass that ignores slow changes from overlying organs).
    band = ndimage.gaussian_filter1d(work[:, max(0, centre_col - depth // 3):centre_col + depth // 3 + 1].mean(axis=1),
                                     2.0 / WORK_MM)
    h = int(round(8.0 / WORK_MM))
    valley = np.zeros_like(band)
    valley[h:-h] = 0.5 * (band[:-2 * h] + band[2 * h:]) - band[h:-h]
    peaks, _ = signal.find_peaks(valley, distance=int(12 / WORK_MM), height=0.0)
    chain = _regular_chain(peaks, valley[peaks], min_gap=min_body_mm / WORK_MM)
    # Discs must stand out: their median depth ≥ 1.5× that of the other valleys (in noise
    # or a non-spine image a "regular chain" is as shallow as everything else).
    others = valley[np.setdiff1d(peaks, chain)]
    contrast = float(np.median(valley[chain]) / max(float(np.median(others)) if others.size else 0.0, 1e-12))
    if chain.size < 5 or contrast < 1.5:
        raise GeometryError("could not find four vertebral bodies separated by discs in this image; "
                            "is it a lateral lumbar radiograph with L1–L5 in view, upright (spine running top "
                            "to bottom, not rotated 90°)?")
    names = ORDER[: ORDER.index(lowest_level) + 1]
    # Endplates lie half a disc height from each disc centre; the disc height is the median
    # full width at half maximum of the chain's valleys (more stable than per-body edges).
    half_disc = 0.5 * float(np.median(signal.peak_widths(valley, chain, rel_height=0.5)[0]))
    bodies = list(zip(chain[:-1], chain[1:]))[::-1]  # from the lowest body upwards
    landmarks = []
    for name, (top_disc, bottom_disc) in zip(names[::-1], bodies):
        landmarks.append(_body_landmark(name, highpass, top_disc + half_disc, bottom_disc - half_disc,
                                        centre_col, depth, facing, zoom))
    landmarks.sort(key=lambda v: ORDER.index(v.name))
    warnings.append(f"levels counted upwards from the lowest detected body, taken as {lowest_level}")
    return Localisation(vertebrae=tuple(landmarks), facing=facing, method="profile_v1", warnings=tuple(warnings))


def _facing_from_outline(work: np.ndarray, centre_col: int) -> str:
    """The abdomen extends much farther in front of the lumbar spine than behind it: the side on
    which the body outline (half the spine-column level) lies farther away is anterior."""
    profile = ndimage.uniform_filter1d(work.mean(axis=0), 9, mode="nearest")
    level = 0.5 * (profile[centre_col] + profile.min())
    outside = profile < level
    left_edge = np.nonzero(outside[:centre_col])[0]
    right_edge = np.nonzero(outside[centre_col:])[0]
    left = centre_col - (left_edge[-1] if left_edge.size else 0)
    right = right_edge[0] if right_edge.size else work.shape[1] - centre_col
    return "left" if left > right else "right"


def _regular_chain(peaks: np.ndarray, strength: np.ndarray, *, min_gap: float, tolerance: float = 0.06) -> np.ndarray:
    """Longest run of disc candidates spaced by one period P (± tolerance·P), over all P ≥ min_gap.

    Dynamic programming over the (few) candidates for each trial period; ties go to the larger
    summed valley strength. A rival, spurious valley between two discs cannot join because its gaps
    are off the period.
    """
    # Faint valleys (noise, soft-tissue edges) may not join: at least 25 % of a typical disc's
    # strength, the typical disc being the median of the six strongest candidates.
    if peaks.size:
        keep = strength >= 0.25 * float(np.median(np.sort(strength)[-6:]))
        peaks, strength = peaks[keep], strength[keep]
    if peaks.size < 2:
        return peaks
    best_key, best_chain = (0, 0.0), peaks[:1]
    for period in np.arange(min_gap, 3.0 * min_gap, 0.5):
        length = np.ones(peaks.size, dtype=int)
        total = strength.astype(float).copy()
        parent = np.full(peaks.size, -1)
        for i in range(1, peaks.size):
            gaps = peaks[i] - peaks[:i]
            ok = np.nonzero(np.abs(gaps - period) <= tolerance * period)[0]
            if ok.size:
                j = ok[np.lexsort((total[ok], length[ok]))[-1]]
                length[i], total[i], parent[i] = length[j] + 1, total[j] + strength[i], j
        i = int(np.lexsort((total, length))[-1])
        if (length[i], total[i]) > best_key:
            best_key = (int(length[i]), float(total[i]))
            chain = []
            while i >= 0:
                chain.append(peaks[i])
                i = parent[i]
            best_chain = np.asarray(chain[::-1])
    # A chain end much shallower than its discs (the lumbosacral transition, a rib crossing) is
    # not a disc of the lumbar column: trim ends below half the chain's median strength.
    depth_of = dict(zip(peaks.tolist(), strength.tolist()))
    while best_chain.size > 2:
        typical = 0.5 * float(np.median([depth_of[p] for p in best_chain.tolist()]))
        if depth_of[int(best_chain[-1])] < typical:
            best_chain = best_chain[:-1]
        elif depth_of[int(best_chain[0])] < typical:
            best_chain = best_chain[1:]
        else:
            break
    return best_chain


def _body_landmark(name: str, highpass: np.ndarray, top: float, bottom: float, centre_col: int, depth: int,
                   facing: str, zoom: tuple[float, float]) -> VertebraLandmark:
    """Corners of one body from its endplate rows (work grid) and the half-maximum crossings of its
    column profile (anterior / posterior borders)."""
    rows = slice(int(np.ceil(top)), int(np.floor(bottom)) + 1)
    col_profile = ndimage.gaussian_filter1d(highpass[rows].mean(axis=0), 1.0 / WORK_MM)
    lo = max(0, centre_col - depth)
    hi = min(col_profile.size - 1, centre_col + depth)
    inner = slice(max(lo, centre_col - depth // 3), min(hi, centre_col + depth // 3) + 1)
    peak_c = inner.start + int(np.argmax(col_profile[inner]))
    c_level = 0.5 * (col_profile[peak_c] + min(col_profile[lo], col_profile[hi]))
    left = _half_crossing(col_profile, peak_c, lo, c_level)
    right = _half_crossing(col_profile, peak_c, hi, c_level)
    ant, post = (left, right) if facing == "left" else (right, left)

    def px(r: float, c: float) -> tuple[float, float]:  # work-grid index i is image pixel i / zoom
        return (round(r / zoom[0], 3), round(c / zoom[1], 3))

    corners = (px(top, ant), px(top, post), px(bottom, post), px(bottom, ant))
    return VertebraLandmark(name=name, corners_px=corners, centre_px=px(0.5 * (top + bottom), 0.5 * (ant + post)))
