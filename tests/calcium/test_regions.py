"""Landmark planes (anatomy.regions) and their use in scoring, for both storage orders."""

import numpy as np
import pytest

from vascalc.anatomy.regions import (RegionSplit, split_at_structure, structure_extent_s_mm,
                                     thoracic_abdominal_split)
from vascalc.calcium import score_calcium
from vascalc.imaging.grid import Grid
from vascalc.imaging.labelmap import LabelMap

NAMES = {1: "aorta", 2: "vertebrae_T12", 3: "vertebrae_L1"}


def spine_case(feet_first: bool):
    """40 slices of 2 mm; T12 on slices 20–29 and L1 on 8–17 counted from the feet (S grows
    upwards), an aorta through every slice with one plaque in T12's slices and one in L1's.
    Head-first storage puts the head at index 0 (S decreases with the index)."""
    nz = 40
    labels = np.zeros((nz, 20, 20), dtype=np.int16)
    hu = np.zeros(labels.shape, dtype=np.int16)
    labels[:, 4:10, 4:10] = 1
    labels[20:30, 12:18, 4:10] = 2
    labels[8:18, 12:18, 4:10] = 3
    hu[25, 4:6, 4:6] = 400                     # thoracic plaque (T12 level)
    hu[12, 4:6, 4:7] = 400                     # abdominal plaque (L1 level)
    origin_s = -100.0                          # S of the most inferior slice
    if feet_first:                              # index 0 = feet, +z = superior
        grid = Grid(labels.shape, (2.0, 1.0, 1.0), (0.0, 0.0, origin_s))
        return labels, hu, grid
    labels, hu = labels[::-1].copy(), hu[::-1].copy()   # index 0 = head, direction z = −S
    grid = Grid(labels.shape, (2.0, 1.0, 1.0), (0.0, 0.0, origin_s + 2.0 * (nz - 1)),
                (1, 0, 0, 0, 1, 0, 0, 0, -1))
    return labels, hu, grid


@pytest.mark.parametrize("feet_first", [True, False])
def test_thoracic_abdominal_plane(feet_first):
    labels, hu, grid = spine_case(feet_first)
    t12 = structure_extent_s_mm((labels, NAMES), grid, "vertebrae_T12")
    l1 = structure_extent_s_mm((labels, NAMES), grid, "vertebrae_L1")
    assert t12 == (pytest.approx(-60.0), pytest.approx(-42.0))    # slices 20–29 from the feet
    assert l1 == (pytest.approx(-84.0), pytest.approx(-66.0))
    split = thoracic_abdominal_split(LabelMap(labels, grid, NAMES), grid)
    assert split == RegionSplit("aorta", -63.0, "aorta_thoracic", "aorta_abdominal", split.source)
    r = score_calcium(hu, np.where(labels == 1, 1, 0), {1: "aorta"}, grid, region_splits=[split])
    parts = {s.name: s for s in r.structures}
    assert parts["aorta_thoracic"].n_calcium_voxels == 4
    assert parts["aorta_abdominal"].n_calcium_voxels == 6
    assert parts["aorta_thoracic"].vessel_volume_mm3 == pytest.approx(36 * 2.0 * 21)   # slices 19–39 (S ≥ −63 mm)
    assert parts["aorta_thoracic"].parent == "aorta" and parts["aorta_thoracic"].kind == "region"


def test_split_missing_landmarks_and_generic_split():
    labels, _, grid = spine_case(True)
    only_l1 = np.where(labels == 2, 0, labels)
    split = thoracic_abdominal_split((only_l1, NAMES), grid)
    assert split.plane_s_mm == pytest.approx(-66.0) and "T12 absent" in split.source
    assert thoracic_abdominal_split((np.where(labels > 1, 0, labels), NAMES), grid) is None
    top = split_at_structure((labels, NAMES), grid, structure="aorta", landmark="vertebrae_L1", at="top")
    assert top.plane_s_mm == pytest.approx(-66.0) and top.above == "aorta_above_vertebrae_L1"
    centre = split_at_structure((labels, NAMES), grid, structure="aorta", landmark="vertebrae_L1", at="centre")
    assert centre.plane_s_mm == pytest.approx(-75.0)
    assert split_at_structure((labels, NAMES), grid, structure="aorta", landmark="heart") is None


def renal_case(feet_first: bool):
    """40 slices of 2 mm (S = −100 … −22 mm from the feet): an aorta column, a left renal artery
    leaving it at slices 24–25 (S −52/−50 mm), a left iliac column below slice 10, a femur on slices
    0–3; plaques in the aorta above (slice 30) and below (slice 15) the renal origin and one in the iliac."""
    names = {1: "aorta", 2: "renal_artery_left", 3: "iliac_artery_left", 4: "femur_left"}
    labels = np.zeros((40, 30, 30), dtype=np.int16)
    hu = np.zeros(labels.shape, dtype=np.int16)
    labels[10:, 10:16, 10:16] = 1
    labels[24:26, 12:14, 16:26] = 2
    labels[:10, 10:16, 4:10] = 3
    labels[0:4, 20:26, 2:8] = 4
    hu[30, 10:12, 10:12] = 400
    hu[15, 10:12, 10:13] = 400
    hu[5, 10:12, 4:6] = 400
    origin_s = -100.0
    if feet_first:
        return LabelMap(labels, Grid(labels.shape, (2.0, 1.0, 1.0), (0.0, 0.0, origin_s)), names), hu
    grid = Grid(labels.shape, (2.0, 1.0, 1.0), (0.0, 0.0, origin_s + 2.0 * 39), (1, 0, 0, 0, 1, 0, 0, 0, -1))
    return LabelMap(labels[::-1].copy(), grid, names), hu[::-1].copy()


@pytest.mark.parametrize("feet_first", [True, False])
def test_infrarenal_split_and_renal_to_knee_range(feet_first):
    from vascalc.anatomy.regions import infrarenal_split, named_regions, renal_origin_s_mm

    labels, hu = renal_case(feet_first)
    origin = renal_origin_s_mm(labels, labels.grid)
    assert origin == pytest.approx((-51.0, "renal_artery_left"))  # mean S of slices 24 and 25
    split = infrarenal_split(labels, labels.grid)
    assert (split.above, split.below, split.plane_s_mm) == ("aorta_suprarenal", "aorta_infrarenal", pytest.approx(-51.0))
    regions, notes = named_regions(("infrarenal", "renal_to_knee"), labels, labels.grid,
                                   ("aorta", "renal_artery_left", "iliac_artery_left"))
    assert notes == []
    vessels = np.where(np.isin(labels.labels, [1, 2, 3]), labels.labels, 0)
    result = score_calcium(hu, vessels, {1: "aorta", 2: "renal_artery_left", 3: "iliac_artery_left"}, labels.grid,
                           region_splits=regions)
    volume = {s.name: s.calcium_volume_mm3 for s in result.structures}
    assert volume["aorta_suprarenal"] == pytest.approx(4 * 2.0)      # 2×2 px × 2 mm slice
    assert volume["aorta_infrarenal"] == pytest.approx(6 * 2.0)      # 2×3 px
    assert volume["renal_to_knee"] == pytest.approx(6 * 2.0 + 4 * 2.0)  # infrarenal aorta + iliac
    span = next(r for r in regions if getattr(r, "name", None) == "renal_to_knee")
    assert span.s_low_mm == pytest.approx(-100.0) and span.s_high_mm == pytest.approx(-51.0)


def test_regions_needing_missing_landmarks_are_reported():
    from vascalc.anatomy.regions import named_regions

    labels, _ = renal_case(True)
    no_renal = labels.subset(["aorta", "iliac_artery_left"])
    regions, notes = named_regions(("infrarenal", "renal_to_knee"), no_renal, no_renal.grid, ("aorta",))
    assert regions == [] and len(notes) == 2 and "renal_artery" in notes[0]
