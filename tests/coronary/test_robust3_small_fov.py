"""A cardiac field of view (180 mm) that cuts both lungs is still a chest CT (docs/acquisition-sweep.md)."""

from __future__ import annotations

import dataclasses

import numpy as np

from vascalc.coronary.heart import find_heart
from vascalc.imaging import Grid


def test_a_small_field_of_view_that_cuts_the_lungs_finds_the_whole_heart():
    from vascalc.phantoms import make_chest_phantom

    phantom = make_chest_phantom(2, shape=(32, 128, 128), spacing_mm=(5.0, 2.5, 2.5), distractors="none",
                                 ribs=False, motion_blur_mm=None)
    grid = phantom.volume.grid
    box = (slice(None), slice(24, 104), slice(30, 102))  # 200 × 180 mm around the heart
    origin = grid.index_to_lps(np.array([[0, 24, 30]]))[0]
    small = Grid(shape=phantom.volume.hu[box].shape, spacing_mm=grid.spacing_mm,
                 origin_lps_mm=tuple(float(v) for v in origin), direction=grid.direction)
    hu = np.ascontiguousarray(phantom.volume.hu[box])
    lung_at_edge = (hu[:, :, 0] < -400).any() and (hu[:, :, -1] < -400).any()
    assert lung_at_edge  # both lungs run out of the image: this used to read "no lungs found"
    volume = dataclasses.replace(phantom.volume, hu=hu, grid=small,
                                 info=dataclasses.replace(phantom.volume.info, contrast_agent=None))
    region = find_heart(volume, segmenter="builtin")
    truth = phantom.labels.mask("heart")[box]
    assert truth.sum() == phantom.labels.mask("heart").sum()  # the whole heart is in the small field
    overlap = (region.mask & truth).sum() / truth.sum()
    assert overlap > 0.9
    assert region.touches_fov == ()
