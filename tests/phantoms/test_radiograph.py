import numpy as np
import pytest

from vascalc.errors import InputError
from vascalc.phantoms import (PlaqueSpec, kauppila_grade, kauppila_truth, make_chest_phantom, make_vascular_phantom,
                              project_lateral_radiograph)
from vascalc.phantoms.radiograph import _union_length
from vascalc.phantoms.vascular import abdominal_layout, abdominal_vessels

GRID = dict(shape=(200, 150, 120), spacing_mm=(1.0, 2.0, 3.0), noise_sd_hu=5.0)


@pytest.mark.parametrize("f, grade", [(0.0, 0), (1e-6, 1), (0.2, 1), (1 / 3, 2), (0.5, 2), (2 / 3, 3), (1.0, 3)])
def test_kauppila_grade_table(f, grade):
    assert kauppila_grade(f) == grade


def test_union_length():
    assert _union_length([(0, 2), (1, 3), (5, 6)], 0.5, 5.5) == pytest.approx(3.0)
    assert _union_length([], 0, 1) == 0.0


def _aorta_s_at(z):
    aorta = next(v for v in abdominal_vessels() if v.name == "aorta")
    starts = np.concatenate([[0.0], np.cumsum(aorta.segment_lengths())])
    z_pts = np.array([p[2] for p in aorta.points])
    return float(np.interp(-z, -z_pts, starts))


def test_kauppila_truth_from_a_known_posterior_plaque():
    """A narrow posterior plaque covering half of the L2 level → L2 posterior grade 2, nothing else."""
    L = abdominal_layout()["vertebrae"]
    top = 0.5 * (L["vertebrae_L1"]["z_bottom_mm"] + L["vertebrae_L2"]["z_top_mm"])
    bottom = 0.5 * (L["vertebrae_L2"]["z_bottom_mm"] + L["vertebrae_L3"]["z_top_mm"])
    height = top - bottom
    z_start = top - 0.25 * height
    s0 = _aorta_s_at(z_start)
    length = _aorta_s_at(z_start - 0.5 * height) - s0
    spec = PlaqueSpec("aorta", s0, length, 10.0, 180.0, 1.5, 700.0)
    ph = make_vascular_phantom(seed=0, plaques=[spec], **GRID)
    k = kauppila_truth(ph.truth)
    seg = k["segments"]
    assert seg["L2_posterior"]["fraction"] == pytest.approx(0.5, abs=0.01)
    assert seg["L2_posterior"]["grade"] == 2
    assert all(s["grade"] == 0 for name, s in seg.items() if name != "L2_posterior")
    assert k["aac24"] == 2


def test_radiograph_image_and_landmarks():
    ph = make_vascular_phantom(seed=4, plaque_rate=2.0, **GRID)
    xr = project_lateral_radiograph(ph, pixel_spacing_mm=1.0, seed=1)
    again = project_lateral_radiograph(ph, pixel_spacing_mm=1.0, seed=1)
    assert np.array_equal(xr.image, again.image)
    assert xr.image.shape == (200, 299) and xr.pixel_spacing_mm == (1.0, 1.0)
    assert 0.0 <= xr.image.min() and xr.image.max() <= 1.0
    names = [v.name for v in xr.vertebrae]
    assert names == ["L1", "L2", "L3", "L4"]
    for v in xr.vertebrae:
        a_sup, p_sup, p_inf, a_inf = v.corners_px
        assert a_sup[1] < p_sup[1] and a_sup[0] < a_inf[0]  # anterior left of posterior; superior above
        r0, r1 = int(a_sup[0]) + 2, int(a_inf[0]) - 1
        c0, c1 = int(a_sup[1]) + 2, int(p_sup[1]) - 1
        # the vertebral body projects brighter than the typical pixel of its rows (soft tissue)
        assert xr.image[r0:r1, c0:c1].mean() > np.median(xr.image[r0:r1, :]) + 0.02
    assert xr.aac24 == sum(xr.segment_grades.values())
    assert set(xr.segment_grades) == {f"L{i}_{w}" for i in range(1, 5) for w in ("anterior", "posterior")}


def test_radiograph_needs_the_vascular_phantom():
    with pytest.raises(InputError):
        project_lateral_radiograph(make_chest_phantom(seed=0, shape=(8, 64, 64), spacing_mm=(5, 5, 5)))
