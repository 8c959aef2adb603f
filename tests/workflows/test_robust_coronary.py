"""Heart masks as users hand them over: binary files with uninformative names, other grids."""

from __future__ import annotations

import numpy as np

from vascalc.imaging import Grid, load_labelmap, save_labels_nifti
from vascalc.workflows.coronary import _binary_heart_names


def _heart(grid: Grid) -> np.ndarray:
    mask = np.zeros(grid.shape, dtype=np.uint8)
    mask[1:4, 3:9, 2:7] = 1
    return mask


def test_an_oddly_named_binary_mask_is_the_heart_not_totalsegmentator_id_1(tmp_path):
    grid = Grid(shape=(5, 12, 10), spacing_mm=(2.5, 1.25, 1.25))
    save_labels_nifti(_heart(grid) * 255, grid, tmp_path / "seg_mask.nii.gz")
    names = _binary_heart_names(tmp_path / "seg_mask.nii.gz")
    assert names == {255: "heart"}
    labels = load_labelmap(tmp_path / "seg_mask.nii.gz", grid, names=names)
    assert labels.present_names() == ["heart"] and int(labels.mask("heart").sum()) == 3 * 6 * 5
    # without it the id would have been read through TotalSegmentator's table: id 1 is the spleen
    save_labels_nifti(_heart(grid), grid, tmp_path / "other.nii.gz")
    assert load_labelmap(tmp_path / "other.nii.gz", grid).present_names() == ["spleen"]
    assert _binary_heart_names(tmp_path / "other.nii.gz") == {1: "heart"}


def test_named_masks_and_multilabel_maps_keep_their_own_names(tmp_path):
    grid = Grid(shape=(5, 12, 10), spacing_mm=(2.5, 1.25, 1.25))
    save_labels_nifti(_heart(grid), grid, tmp_path / "aorta.nii.gz")  # a structure's name: not the heart
    assert _binary_heart_names(tmp_path / "aorta.nii.gz") is None
    multi = _heart(grid) * 51
    multi[4, 0:2, 0:2] = 52
    save_labels_nifti(multi, grid, tmp_path / "seg.nii.gz")  # TotalSegmentator ids: heart 51, aorta 52
    assert _binary_heart_names(tmp_path / "seg.nii.gz") is None
    assert load_labelmap(tmp_path / "seg.nii.gz", grid).present_names() == ["heart", "aorta"]
