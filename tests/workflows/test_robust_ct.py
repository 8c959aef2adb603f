"""The CT job on inputs it had not met: other axis orders, masks that do not belong to the scan."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

import vascalc
from vascalc.errors import MaskError
from vascalc.imaging import Grid, LabelMap, ScanInfo, Volume, load_volume, save_labels_nifti, save_volume_nifti

#: one 4×4-pixel lesion of 450 HU at 0.5 mm pixels: 4 mm² × weight 4 (SCORING.md A.3), 3 mm slices
HAND_AGATSTON = 16.0
HAND_VOLUME_MM3 = 16 * 0.25 * 3.0


def _tiny_scan() -> tuple[np.ndarray, np.ndarray, Grid]:
    hu = np.full((5, 24, 22), 40, dtype=np.int16)
    hu[:, :2, :] = -1000  # air in front of the body
    hu[2, 9:13, 8:12] = 450
    aorta = np.zeros(hu.shape, dtype=np.uint8)
    aorta[:, 6:16, 5:15] = 1
    grid = Grid(shape=hu.shape, spacing_mm=(3.0, 0.5, 0.5), origin_lps_mm=(-5.0, -6.0, 100.0))
    return hu, aorta, grid


def _reoriented(src, dst, how: str) -> None:
    """Rewrite a NIfTI with the same voxels in space but another axis order / direction on disk."""
    image = nib.load(src)
    data, affine = np.asarray(image.dataobj), image.affine.copy()
    permutations = {"transpose_xy": [1, 0, 2], "coronal_slices": [0, 2, 1], "sagittal_slices": [2, 1, 0]}
    if how in permutations:  # on-disk (i, j, k) axes taken from these source axes
        order = permutations[how]
        data, affine = data.transpose(order), affine @ np.eye(4)[order + [3]]
    else:
        for axis in {"ras": (0, 1), "z_reversed": (2,)}[how]:
            flip = np.eye(4)
            flip[axis, axis], flip[axis, 3] = -1, data.shape[axis] - 1
            data, affine = np.flip(data, axis), affine @ flip
    out = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    out.set_sform(affine, code=1)
    out.set_qform(affine, code=1)
    nib.save(out, dst)


@pytest.mark.parametrize("how", ["ras", "z_reversed", "transpose_xy", "coronal_slices", "sagittal_slices"])
def test_the_same_scan_in_another_axis_order_scores_the_same(tmp_path, how):
    hu, aorta, grid = _tiny_scan()
    save_volume_nifti(Volume(hu=hu, grid=grid, info=ScanInfo()), tmp_path / "lps.nii.gz")
    (tmp_path / "masks").mkdir()
    save_labels_nifti(aorta, grid, tmp_path / "masks" / "aorta.nii.gz")  # masks stay in the first order
    _reoriented(tmp_path / "lps.nii.gz", tmp_path / f"{how}.nii.gz", how)
    reference = vascalc.score_ct(tmp_path / "lps.nii.gz", tmp_path / "masks").calcium.total
    other = vascalc.score_ct(tmp_path / f"{how}.nii.gz", tmp_path / "masks")
    assert load_volume(tmp_path / f"{how}.nii.gz").grid.axis_codes() != grid.axis_codes()  # really another order
    for total in (reference, other.calcium.total):
        assert total.agatston_raw == pytest.approx(HAND_AGATSTON)
        assert total.calcium_volume_mm3 == pytest.approx(HAND_VOLUME_MM3)
    # Agatston is taken on axial slices whatever the order on disk (SCORING.md A.3)
    assert other.volume.grid.shape[0] == grid.shape[0] and other.volume.grid.spacing_mm[0] == 3.0


def test_masks_lying_on_air_are_refused():
    hu, aorta, grid = _tiny_scan()
    air = Volume(hu=np.full_like(hu, -1024), grid=grid, info=ScanInfo(kvp=120.0))
    with pytest.raises(MaskError, match="lie on air or lung .median -1024 HU"):
        vascalc.score_ct(air, LabelMap(labels=aorta, grid=grid, names={1: "aorta"}))


def test_a_plain_label_map_read_with_the_totalsegmentator_table_says_so(tmp_path):
    hu, aorta, grid = _tiny_scan()
    save_volume_nifti(Volume(hu=hu, grid=grid, info=ScanInfo()), tmp_path / "ct.nii.gz")
    save_labels_nifti(aorta, grid, tmp_path / "seg.nii.gz")  # id 1 is 'spleen' in TotalSegmentator's table
    with pytest.raises(MaskError, match="structures found: spleen.*pass --vessel-names"):
        vascalc.score_ct(tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz")
    named = vascalc.score_ct(tmp_path / "ct.nii.gz", tmp_path / "seg.nii.gz", vessel_names={1: "aorta"})
    assert named.calcium.total.agatston_raw == pytest.approx(HAND_AGATSTON)


def test_a_140_kvp_scan_is_refused_with_the_options_that_score_it():
    from vascalc.errors import MethodError

    hu, aorta, grid = _tiny_scan()
    volume = Volume(hu=hu, grid=grid, info=ScanInfo(kvp=140.0))
    labels = LabelMap(labels=aorta, grid=grid, names={1: "aorta"})
    with pytest.raises(MethodError, match="140 kVp .*agatston:bands_hu=D/W2/W3/W4.*agatston:kv_adjust=false"):
        vascalc.score_ct(volume, labels)
    # explicit bands, written detect/w2/w3/w4: the 450 HU peak gets weight 3 below a 500 HU top edge
    banded = vascalc.score_ct(volume, labels, method="agatston:bands_hu=119/183/274/500").calcium.total
    assert banded.agatston_raw == pytest.approx(4.0 * 3)
    fixed = vascalc.score_ct(volume, labels, method="agatston:kv_adjust=false").calcium.total
    assert fixed.agatston_raw == pytest.approx(HAND_AGATSTON)
    with pytest.raises(MethodError, match="four rising HU values"):
        vascalc.score_ct(volume, labels, method="agatston:bands_hu=119/100")
