"""The partial-volume significance guard (``cluster_pv(significance_sd=3)``): a bright noise speck in a
contrast-filled lumen adds no integrated volume, a real calcification keeps its volume."""

from __future__ import annotations

import numpy as np
import pytest

from vascalc.calcium import score_calcium
from vascalc.imaging.grid import Grid


def _tube(seed: int):
    rng = np.random.default_rng(seed)
    shape = (20, 48, 48)
    spacing = (1.0, 0.8, 0.8)
    hu = rng.normal(350.0, 20.0, size=shape)           # CTA lumen, 20 HU noise
    zz, yy, xx = np.indices(shape)
    vessel = ((yy - 24) ** 2 + (xx - 24) ** 2 <= 12 ** 2).astype(np.int16)
    hu[vessel == 0] = rng.normal(-100.0, 20.0, size=int((vessel == 0).sum()))
    return hu, vessel, Grid(shape=shape, spacing_mm=spacing)


def test_noise_speck_in_contrast_lumen_has_no_integrated_volume():
    hu, vessel, grid = _tube(1)
    hu[10, 20:22, 20:22] = 430.0                        # 2×2 speck just above the 420 HU threshold
    res = score_calcium(hu, vessel, {1: "aorta"}, grid, "hu=420")
    aorta = res.structures[0]
    assert aorta.calcium_volume_mm3 > 0                 # the threshold counts it
    assert aorta.integrated_volume_mm3 == 0.0 and aorta.integrated_mass_mg == 0.0


def test_real_calcification_keeps_its_integrated_volume():
    hu, vessel, grid = _tube(2)
    hu[9:12, 22:25, 22:25] = 1000.0                     # 27 voxels of dense calcium, unblurred
    res = score_calcium(hu, vessel, {1: "aorta"}, grid, "hu=420")
    true_volume = 27 * float(np.prod(grid.spacing_mm))
    assert res.structures[0].integrated_volume_mm3 == pytest.approx(true_volume, rel=0.1)
