"""The CT job when only the acquisition changes (docs/acquisition-sweep.md): noisy thin slices, very short
scans, a single slice."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import median_abs_deviation

from vascalc.errors import InputError
from vascalc.imaging import Grid, LabelMap, ScanInfo, Volume
from vascalc.workflows.ct import (SHORT_SCAN_MM, expected_noise_voxels, lumen_noise_hu, score_ct,
                                  short_scan_warning)


def _tube_scan(noise_sd_hu: float, seed: int = 0, shape=(24, 64, 64), spacing=(2.5, 1.0, 1.0)):
    """Blood (40 HU) plus white noise in a 12-mm tube along z inside soft tissue, no calcium."""
    rng = np.random.default_rng(seed)
    hu = 40.0 + noise_sd_hu * rng.standard_normal(shape)
    yy, xx = np.mgrid[:shape[1], :shape[2]]
    tube = (np.hypot((yy - 32) * spacing[1], (xx - 32) * spacing[2]) <= 12.0)
    labels = np.broadcast_to(tube, shape).astype(np.uint8)
    grid = Grid(shape=shape, spacing_mm=spacing)
    volume = Volume(hu=np.round(hu).astype(np.int16), grid=grid, info=ScanInfo(kvp=120.0))
    return volume, LabelMap(labels=labels, grid=grid, names={1: "aorta"})


def test_expected_noise_voxels_is_the_gaussian_tail():
    # (130 − 40) / 30 = 3 SD: Q(3) = 0.0013499 by hand from the normal table
    assert expected_noise_voxels(10_000, 40.0, 30.0, 130.0) == pytest.approx(13.499, abs=1e-3)
    assert expected_noise_voxels(10_000, 40.0, 0.0, 130.0) == 0.0
    assert expected_noise_voxels(10, 200.0, 0.0, 130.0) == 10.0


def test_lumen_noise_is_measured_inside_the_eroded_mask():
    volume, labels = _tube_scan(25.0)
    median, sd, n = lumen_noise_hu(volume.hu, labels.labels, volume.grid.spacing_mm)
    assert median == pytest.approx(40.0, abs=1.5)
    assert sd == pytest.approx(25.0, rel=0.06)
    # cross-check with scipy's normal-scaled MAD on the same kind of sample: the 10-mm core
    core = labels.labels[::2] > 0
    yy, xx = np.mgrid[:64, :64]
    core &= np.hypot(yy - 32, xx - 32)[None] <= 9.5
    assert sd == pytest.approx(median_abs_deviation(volume.hu[::2][core], scale="normal"), rel=0.03)
    assert n == pytest.approx(core.sum(), rel=0.1)


@pytest.mark.parametrize("noise_sd_hu, warned", [(40.0, True), (8.0, False)])
def test_noise_that_reaches_130_hu_is_flagged(noise_sd_hu, warned):
    volume, labels = _tube_scan(noise_sd_hu)
    result = score_ct(volume, vessels=labels)
    noise = [w for w in result.to_dict()["warnings"] if w.startswith("image noise")]
    assert bool(noise) is warned
    if warned:
        # 24 × 453 mask voxels × Q(2.25) ≈ 133 false voxels: the scan really shows calcium it does not have
        assert result.calcium.total.calcium_volume_mm3 > 0
        assert "≈ 40 HU" in noise[0] and "--method adaptive" in noise[0]
    else:
        assert result.calcium.total.calcium_volume_mm3 == 0


def test_adaptive_scoring_is_not_flagged_for_noise():
    volume, labels = _tube_scan(40.0)
    warnings = score_ct(volume, vessels=labels, method="adaptive").to_dict()["warnings"]
    assert not any(w.startswith("image noise") for w in warnings)


def test_a_short_scan_flags_the_builtin_segmenter_only():
    grid = Grid(shape=(12, 8, 8), spacing_mm=(2.5, 1.0, 1.0))  # 30 mm
    volume = Volume(hu=np.zeros(grid.shape, np.int16), grid=grid)
    note = short_scan_warning(volume, "builtin")
    assert note is not None and "30.0 mm" in note
    assert short_scan_warning(volume, "totalsegmentator") is None
    long_grid = Grid(shape=(int(SHORT_SCAN_MM / 2.5), 8, 8), spacing_mm=(2.5, 1.0, 1.0))  # exactly 40 mm
    assert short_scan_warning(Volume(hu=np.zeros(long_grid.shape, np.int16), grid=long_grid), "builtin") is None


def test_a_single_slice_is_refused_by_the_segmenter_with_a_clear_error():
    # it used to stop inside the landmark finder with numpy's "too small to calculate a gradient"
    volume, _ = _tube_scan(10.0, shape=(1, 64, 64))
    with pytest.raises(InputError, match="at least 3 slices"):
        score_ct(volume, segmenter="builtin")


def _spine_labels(vertebrae: dict[str, tuple[int, int]], aorta_z: tuple[int, int], flip_z: bool = False) -> LabelMap:
    """A 40-slice label map (index 0 = bottom unless ``flip_z``) with vertebra slabs and an aorta tube."""
    labels = np.zeros((40, 16, 16), np.uint8)
    names = {}
    for k, (name, (z0, z1)) in enumerate(vertebrae.items(), start=2):
        labels[z0:z1, 8:14, 5:11] = k
        names[k] = name
    labels[aorta_z[0]:aorta_z[1], 2:6, 6:10] = 1
    names[1] = "aorta"
    direction = (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)
    if flip_z:  # the same anatomy stored top slice first
        labels = labels[::-1].copy()
        direction = (1.0, 0, 0, 0, 1.0, 0, 0, 0, -1.0)
    return LabelMap(labels=labels, grid=Grid(shape=labels.shape, spacing_mm=(2.5, 1, 1), direction=direction),
                    names=names)


@pytest.mark.parametrize("flip_z", [False, True])
def test_an_aorta_where_the_aorta_has_divided_is_flagged(flip_z):
    from vascalc.workflows.ct import misplaced_aorta_warning

    spine = {"sacrum": (0, 10), "vertebrae_L5": (12, 22), "vertebrae_L4": (25, 35)}
    # a normal aorta ends at L4: nothing to say
    assert misplaced_aorta_warning(_spine_labels(spine, (28, 40), flip_z)) is None
    # wholly below the middle of L5 (slice 17)
    low = misplaced_aorta_warning(_spine_labels(spine, (3, 16), flip_z))
    assert low is not None and "below the middle of L5" in low
    # a scan that starts at L5: no vertebra above it, so no aorta can be in view
    pelvis = {"sacrum": (0, 10), "vertebrae_L5": (12, 40)}
    starts = misplaced_aorta_warning(_spine_labels(pelvis, (0, 40), flip_z))
    assert starts is not None and "starts at L5 or lower" in starts
    # without L5 or the sacrum there is nothing to judge by
    assert misplaced_aorta_warning(_spine_labels({"vertebrae_L2": (10, 30)}, (0, 40), flip_z)) is None
