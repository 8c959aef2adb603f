"""The heart and the field of view (docs/acquisition-sweep.md): when is the heart cut off, and a cardiac
field of view that cuts the lungs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from vascalc.anatomy.builtin.landmarks import _close_at_fov_edge
from vascalc.coronary.heart import FOV_END_SECTION_FRACTION, FOV_SIDE_MARGIN_MM, _fov_faces, find_heart
from vascalc.imaging import Grid


def _ellipsoid(shape, centre, semi):
    zz, yy, xx = np.indices(shape)
    return ((zz - centre[0]) / semi[0]) ** 2 + ((yy - centre[1]) / semi[1]) ** 2 + ((xx - centre[2]) / semi[2]) ** 2 <= 1


GRID = Grid(shape=(40, 100, 100), spacing_mm=(2.5, 1.0, 1.0))  # identity: x index → patient left, z → top


def test_a_heart_well_inside_the_field_touches_nothing():
    assert _fov_faces(_ellipsoid(GRID.shape, (20, 50, 50), (12, 30, 30)), GRID) == ()


def test_a_heart_near_a_side_is_cut_off_there():
    # right edge of the ellipsoid at x = 90 → 9 mm from the last column (x = 99): within the 10-mm margin
    near = _ellipsoid(GRID.shape, (20, 50, 60), (12, 30, 30))
    assert FOV_SIDE_MARGIN_MM == 10.0
    assert _fov_faces(near, GRID) == ("left",)
    # 12 mm away: not cut
    assert _fov_faces(_ellipsoid(GRID.shape, (20, 50, 57), (12, 30, 30)), GRID) == ()


def test_a_thin_stalk_to_the_top_slice_is_not_a_cut_heart():
    heart = _ellipsoid(GRID.shape, (15, 50, 50), (10, 30, 30))
    stalk = heart.copy()
    stalk[25:, 45:55, 45:55] = True  # 100 voxels per slice vs ≈ 2800 at the heart's widest: 0.04
    assert _fov_faces(stalk, GRID) == ()
    # cut through its upper third: the top slice holds ≥ 35 % of the widest section
    cut = _ellipsoid(GRID.shape, (34, 50, 50), (12, 30, 30))
    areas = cut.sum(axis=(1, 2))
    assert areas[-1] >= FOV_END_SECTION_FRACTION * areas.max()
    assert _fov_faces(cut, GRID) == ("top",)


def test_lungs_cut_by_the_field_are_closed_in_but_outside_air_is_not():
    h = np.full((3, 40, 40), -1000.0)
    yy, xx = np.mgrid[:40, :40]
    body = np.hypot(yy - 20, (xx - 20) * 0.45) <= 17  # wider than the image: cut left and right
    h[:, body] = 40.0
    lungs = body & (np.abs(xx - 20) >= 8) & (np.abs(yy - 20) <= 10)  # reach both side edges
    h[:, lungs] = -850.0
    tissue = h > -400
    closed = _close_at_fov_edge(tissue, h)
    assert closed[:, lungs].all()                 # the lungs are inside the body now
    assert not closed[:, ~body].any()             # the air around the patient stays outside
    # a body wholly inside the field is left as the plain hole filling gives it
    small = np.full((3, 40, 40), -1000.0)
    small[:, np.hypot(yy - 20, xx - 20) <= 12] = 40.0
    small[:, np.hypot(yy - 20, xx - 20) <= 5] = -850.0
    assert np.array_equal(_close_at_fov_edge(small > -400, small), np.broadcast_to(np.hypot(yy - 20, xx - 20) <= 12, small.shape))


@pytest.mark.parametrize("fov_cut_mm, faces", [(20.0, ("left",))])
def test_a_chest_phantom_cut_on_the_left_is_flagged(fov_cut_mm, faces):
    from vascalc.phantoms import make_chest_phantom

    phantom = make_chest_phantom(5, shape=(32, 128, 128), spacing_mm=(5.0, 2.5, 2.5), fov_cut_mm=fov_cut_mm,
                                 distractors="none", ribs=False, motion_blur_mm=None)
    truth = phantom.labels.mask("heart")
    assert truth[:, :, -1].any()  # the phantom's heart really is cut by the left edge
    # no contrast tag: as a NIfTI file would arrive
    volume = dataclasses.replace(phantom.volume, info=dataclasses.replace(phantom.volume.info, contrast_agent=None))
    assert find_heart(volume, segmenter="builtin").touches_fov == faces


def test_a_body_running_out_of_the_field_is_named_by_side():
    from vascalc.coronary.heart import body_cut_faces

    hu = np.full(GRID.shape, -1000.0)
    yy, xx = np.mgrid[:100, :100]
    hu[:, np.hypot(yy - 50, (xx - 70) * 0.8) <= 40] = 40.0  # reaches x = 99 (the patient's left edge) only
    assert body_cut_faces(hu, GRID) == ("left",)
    flipped = Grid(shape=GRID.shape, spacing_mm=GRID.spacing_mm, direction=(-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    assert body_cut_faces(hu, flipped) == ("right",)  # the same pixels in an image stored right-to-left
    hu[:] = -1000.0
    hu[:, np.hypot(yy - 50, xx - 50) <= 40] = 40.0
    assert body_cut_faces(hu, GRID) == ()
