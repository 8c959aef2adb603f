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
