"""Kauppila geometry and grading on hand-placed landmarks and hand-drawn calcium (SCORING.md B.1–B.4)."""

import numpy as np
import pytest

from vascalc.errors import GeometryError, InputError
from vascalc.phantoms.types import VertebraLandmark
from vascalc.radiograph.kauppila import (
    aac8_points,
    covered_length,
    grade_fraction,
    parse_bands,
    score_masks,
    segment_confidence,
    severity_class,
    spine_geometry,
    split_mask_by_wall,
)

W = 100  # image width (columns)
# Bodies 20 px tall, discs 10 px, edges on half pixels so that pixel squares tile the segments:
# L1 9.5–29.5, L2 39.5–59.5, L3 69.5–89.5, L4 99.5–119.5 → boundaries 4.5 (extrapolated), 34.5,
# 64.5, 94.5, 124.5 (extrapolated); every segment is 30 px high.
TOPS = {"L1": 9.5, "L2": 39.5, "L3": 69.5, "L4": 99.5}


def boxes(front: float = 50.0, back: float = 80.0, mirror: bool = False) -> list[VertebraLandmark]:
    out = []
    for name, top in TOPS.items():
        bottom = top + 20
        f, b = (W - 1 - front, W - 1 - back) if mirror else (front, back)
        corners = ((top, f), (top, b), (bottom, b), (bottom, f))
        out.append(VertebraLandmark(name, corners, ((top + bottom) / 2, (f + b) / 2)))
    return out


def calcium(mirror: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Hand-drawn walls: posterior rows 30–44 at column 47, anterior rows 65–84 and 100–104 at column 40."""
    mask = np.zeros((130, W), dtype=bool)
    ant_col, post_col = (W - 1 - 40, W - 1 - 47) if mirror else (40, 47)
    mask[30:45, post_col] = True
    mask[65:85, ant_col] = True
    mask[100:105, ant_col] = True
    return mask, (ant_col, post_col)


EXPECTED_F = {"L1_anterior": 0.0, "L1_posterior": 5 / 30, "L2_anterior": 0.0, "L2_posterior": 10 / 30,
              "L3_anterior": 20 / 30, "L3_posterior": 0.0, "L4_anterior": 5 / 30, "L4_posterior": 0.0}
EXPECTED_GRADES = {"L1_anterior": 0, "L1_posterior": 1, "L2_anterior": 0, "L2_posterior": 2,
                   "L3_anterior": 3, "L3_posterior": 0, "L4_anterior": 1, "L4_posterior": 0}


@pytest.mark.parametrize("mirror", [False, True], ids=["facing_left", "facing_right"])
def test_hand_drawn_segments_exact(mirror):
    geometry = spine_geometry(boxes(mirror=mirror), (1.0, 1.0))
    assert np.allclose(np.abs(geometry.axis), (1.0, 0.0))
    assert geometry.anterior[1] == pytest.approx(1.0 if mirror else -1.0)
    assert geometry.extrapolated == ("T12/L1", "L4/L5")
    top = geometry.boundaries_mm[0]
    assert np.allclose(np.array(geometry.boundaries_mm) - top, [0, 30, 60, 90, 120])
    assert geometry.segment_heights_mm == pytest.approx((30, 30, 30, 30))
    assert geometry.body_heights_mm == pytest.approx((20, 20, 20, 20))
    mask, (ant_col, post_col) = calcium(mirror)
    anterior, posterior = split_mask_by_wall(mask, geometry, centreline_offset_mm=6.0)
    assert anterior[:, ant_col].sum() == 25 and posterior[:, post_col].sum() == 15
    assert not anterior[:, post_col].any() and not posterior[:, ant_col].any()
    result = score_masks(geometry, anterior, posterior)
    assert result.fractions == pytest.approx(EXPECTED_F, abs=1e-6)
    # f = 1/3 (L2 posterior) and 2/3 (L3 anterior) are graded upwards (B.2 step 5)
    assert result.grades == EXPECTED_GRADES
    assert result.aac24 == 7
    assert result.affected_levels == 4 and result.affected_segments == 4
    # AAC-8: anterior 25 px = 1.25 body heights → 2; posterior 15 px = 0.75 → 1 (B.3)
    assert result.calcified_length_anterior_mm == pytest.approx(25.0)
    assert result.calcified_length_posterior_mm == pytest.approx(15.0)
    assert (result.aac8_anterior, result.aac8_posterior, result.aac8) == (2, 1, 3)
    assert result.severity == "high" and result.severity_scheme == "low_moderate_high"
    assert len(result.warnings) == 2


def test_t12_and_l5_give_measured_boundaries_and_spacing_scales_lengths():
    verts = boxes()
    verts.append(VertebraLandmark("T12", ((-22.5, 50), (-22.5, 80), (-0.5, 80), (-0.5, 50)), (-11.5, 65)))
    verts.append(VertebraLandmark("L5", ((131.5, 50), (131.5, 80), (151.5, 80), (151.5, 50)), (141.5, 65)))
    g = spine_geometry(verts, (0.5, 0.5))
    origin = g.origin_mm[0]
    # T12/L1 = (−0.5 + 9.5)/2 = 4.5 px; L4/L5 = (119.5 + 131.5)/2 = 125.5 px; in mm ×0.5
    assert np.array(g.boundaries_mm) + origin == pytest.approx(np.array([4.5, 34.5, 64.5, 94.5, 125.5]) * 0.5)
    assert g.extrapolated == () and g.unit == "mm"
    assert g.segment_heights_mm[-1] == pytest.approx(15.5)


def test_tilted_spine_gives_the_same_fractions():
    """Rotate landmarks and a calcified line by 20°: the f along the (tilted) spinal axis is unchanged."""
    angle = np.deg2rad(20)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])

    def turn(p):  # rotate about (65, 65), shift by 40, then express on a 4× finer pixel grid
        return tuple(4 * (rot @ (np.asarray(p, dtype=float) - 65.0) + 65.0 + 40.0))

    verts = [VertebraLandmark(v.name, tuple(turn(c) for c in v.corners_px), turn(v.centre_px)) for v in boxes()]
    g = spine_geometry(verts, (0.25, 0.25))
    assert g.segment_heights_mm == pytest.approx((30, 30, 30, 30))
    mask = np.zeros((700, 700), dtype=bool)
    for r in np.arange(64.625, 84.5, 0.25):  # a 20 mm line in front of L3, parallel to the spine
        rr, cc = turn((r, 40.0))
        mask[int(round(rr)), int(round(cc))] = True
    result = score_masks(g, mask, np.zeros_like(mask))
    assert result.fractions["L3_anterior"] == pytest.approx(20 / 30, abs=0.02)
    assert result.fractions["L2_anterior"] == pytest.approx(0.0, abs=0.01)
    assert g.unit == "mm" and spine_geometry(boxes(), None).unit == "px"


def test_grades_and_confidence_at_boundaries():
    assert [grade_fraction(f) for f in (0, 1e-9, 0.3333, 1 / 3, 0.5, 2 / 3, 1.0)] == [0, 1, 1, 2, 2, 3, 3]
    assert grade_fraction(10 / 30) == 2 and grade_fraction(0.1 + 0.2 + (1 / 3 - 0.3)) == 2
    assert segment_confidence(1 / 3) == 0.5 and segment_confidence(0.5) == 1.0 and segment_confidence(0) == 1.0
    assert segment_confidence(1 / 3 + 1 / 12) == pytest.approx(0.75, abs=1e-4)


def test_aac8_points_and_severity_bands():
    assert [aac8_points(x, 10.0) for x in (0, 5, 10, 10.001, 20, 30, 30.5)] == [0, 1, 1, 2, 2, 3, 4]
    low = [severity_class(v) for v in (0, 1, 2, 5, 6, 24)]
    assert low == ["low", "low", "moderate", "moderate", "high", "high"]
    assert [severity_class(v, "ge5") for v in (4, 5)] == ["not_high", "high"]
    assert [severity_class(v, "four_band_0_4_15") for v in (0, 1, 4, 5, 15, 16)] == \
        ["none", "mild", "mild", "moderate", "moderate", "severe"]
    assert parse_bands("custom:0=a,3=b") == ("custom", ((0, "a"), (3, "b")))
    assert severity_class(3, "custom:0=a,3=b") == "b"
    for bad in ("custom:1=a", "custom:0=a,0=b", "nonsense", "custom:x"):
        with pytest.raises(InputError):
            parse_bands(bad)


def test_covered_length_matches_a_raster():
    rng = np.random.default_rng(0)
    starts = rng.uniform(0, 100, 40)
    ends = starts + rng.uniform(0, 8, 40)
    grid = np.arange(0, 120, 0.001) + 0.0005
    inside = ((grid[:, None] >= starts) & (grid[:, None] <= ends)).any(axis=1)
    for lo, hi in ((0, 120), (20, 50), (33.3, 33.4)):
        raster = inside[(grid >= lo) & (grid <= hi)].sum() * 0.001
        assert covered_length(starts, ends, lo, hi) == pytest.approx(raster, abs=0.003)
    assert covered_length([], [], 0, 1) == 0.0


def test_bad_landmarks_refused():
    with pytest.raises(GeometryError, match="missing: L3"):
        spine_geometry([v for v in boxes() if v.name != "L3"])
    swapped = boxes()
    swapped[1], swapped[2] = (VertebraLandmark("L2", swapped[2].corners_px, swapped[2].centre_px),
                              VertebraLandmark("L3", swapped[1].corners_px, swapped[1].centre_px))
    with pytest.raises(GeometryError, match="order"):
        spine_geometry(swapped)
