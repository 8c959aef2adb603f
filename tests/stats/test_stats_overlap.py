"""Overlap (§D.1) and surface distances (§D.2) against hand counts, brute force and SimpleITK."""

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.distance import cdist

from vascalc.errors import InputError
from vascalc.stats import overlap_metrics, surface_distances, surface_voxels


def boxes():
    ref = np.zeros((6, 10, 10), bool)
    pred = np.zeros_like(ref)
    ref[1:5, 2:6, 2:6] = True   # 64 voxels
    pred[1:5, 3:7, 2:6] = True  # shifted by one row: overlap 4·3·4 = 48
    return pred, ref


def test_hand_counted_overlap():
    pred, ref = boxes()
    r = overlap_metrics(pred, ref)
    assert (r.tp_voxels, r.fp_voxels, r.fn_voxels) == (48, 16, 16)
    assert r.dice == pytest.approx(96 / 128) and r.iou == pytest.approx(48 / 80)
    assert r.iou == pytest.approx(r.dice / (2 - r.dice))
    assert r.volumetric_similarity == 1.0 and r.sensitivity == r.precision == pytest.approx(0.75)
    bigger = ref.copy()
    bigger[5] = True  # 100 extra false positives
    v = overlap_metrics(bigger, ref)
    assert v.volumetric_similarity == pytest.approx(1 - 100 / (128 + 100))


def test_empty_masks_follow_the_spec():
    empty = np.zeros((3, 4, 4), bool)
    full = empty.copy()
    full[1, 1:3, 1:3] = True
    both = overlap_metrics(empty, empty)
    assert (both.dice, both.iou, both.volumetric_similarity) == (1.0, 1.0, 1.0) and "empty_reference" in both.flags
    no_ref = overlap_metrics(full, empty)
    assert no_ref.dice == 0 and np.isnan(no_ref.sensitivity) and no_ref.precision == 0
    assert "empty_reference" in no_ref.flags
    no_pred = overlap_metrics(empty, full)
    assert no_pred.dice == 0 and np.isnan(no_pred.precision) and "empty_prediction" in no_pred.flags
    d = surface_distances(empty, full, (1, 1, 1))
    assert np.isnan(d.hausdorff_mm) and "empty_prediction" in d.flags
    with pytest.raises(InputError, match="shape"):
        overlap_metrics(empty, np.zeros((3, 4, 5)))


def test_per_slice_mean_skips_empty_slices():
    pred, ref = boxes()
    r = overlap_metrics(pred, ref, aggregation="per_slice_mean")
    assert r.n_slices_used == 4 and r.dice == pytest.approx(0.75)
    ref2 = ref.copy()
    ref2[1] = False  # slice 1: prediction only → Dice 0
    r2 = overlap_metrics(pred, ref2, aggregation="per_slice_mean")
    assert r2.dice == pytest.approx((0 + 3 * 0.75) / 4)


def brute_force(pred, ref, spacing):
    a = np.argwhere(surface_voxels(pred)) * spacing
    b = np.argwhere(surface_voxels(ref)) * spacing
    d = cdist(a, b)
    return d.min(axis=1), d.min(axis=0)


def test_surface_distances_against_brute_force_with_anisotropic_spacing():
    rng = np.random.default_rng(0)
    zz, yy, xx = np.mgrid[:12, :20, :20]
    ref = (zz - 6) ** 2 / 16 + (yy - 10) ** 2 / 36 + (xx - 9) ** 2 / 25 <= 1
    pred = (zz - 5) ** 2 / 20 + (yy - 11) ** 2 / 30 + (xx - 10) ** 2 / 36 <= 1
    pred[rng.random(pred.shape) < 0.002] = True  # a few outliers: the directed distributions differ
    spacing = np.array([2.5, 0.7, 0.8])
    d_pr, d_rp = brute_force(pred, ref, spacing)
    monai = surface_distances(pred, ref, spacing)
    assert monai.hausdorff_mm == pytest.approx(max(d_pr.max(), d_rp.max()))
    assert monai.hd95_mm == pytest.approx(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))
    medpy = surface_distances(pred, ref, spacing, hd95="medpy")
    assert medpy.hd95_mm == pytest.approx(np.percentile(np.r_[d_pr, d_rp], 95))
    assert medpy.hd95_mm != pytest.approx(monai.hd95_mm) and medpy.hd95_convention == "medpy"
    assert monai.assd_mm == pytest.approx(np.r_[d_pr, d_rp].mean())


def test_hausdorff_matches_simpleitk_for_shifted_cubes():
    ref = np.zeros((20, 20, 20), np.uint8)
    pred = np.zeros_like(ref)
    ref[5:12, 5:12, 5:12] = 1
    pred[5:12, 5:12, 8:15] = 1  # shifted 3 voxels along x
    spacing_zyx = (2.0, 0.5, 0.5)
    images = []
    for array in (pred, ref):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing_zyx[::-1])
        images.append(image)
    hd = sitk.HausdorffDistanceImageFilter()
    hd.Execute(*images)
    r = surface_distances(pred, ref, spacing_zyx)
    assert r.hausdorff_mm == pytest.approx(hd.GetHausdorffDistance()) and r.hausdorff_mm == pytest.approx(1.5)


def test_cropping_keeps_border_voxels_as_surface():
    a = np.zeros((4, 4, 4), bool)
    a[:, :, :2] = True  # touches the array border
    s = surface_voxels(a)
    assert s.sum() == a.sum()  # every voxel touches the border or the background
    r = surface_distances(a, a, (1, 1, 1))
    assert r.hausdorff_mm == 0 and r.hd95_mm == 0


def test_spacing_checked():
    a = np.ones((2, 2, 2), bool)
    with pytest.raises(InputError, match="spacing_mm"):
        surface_distances(a, a, (1, 0, 1))
    with pytest.raises(InputError, match="HD95 convention"):
        surface_distances(a, a, (1, 1, 1), hd95="mean")
