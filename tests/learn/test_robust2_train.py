"""`vascalc train seg2d` on hostile inputs: non-binary masks, empty masks, folds that leave nothing to
train on, bad options and a model folder inside the data: one clear error, nothing written."""

from __future__ import annotations


import numpy as np
import pytest
from PIL import Image

from vascalc.errors import InputError
from vascalc.learn.data import load_slices
from vascalc.learn.split import kfold_slices


def slices_folder(folder, n: int, mask_values=(0, 255), empty_masks: bool = False):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((32, 32)) * 255).astype(np.uint8)).save(folder / f"c_{i}_img.png")
        mask = np.zeros((32, 32), np.uint8)
        if not empty_masks:
            mask[8:16, 8:16] = mask_values[1]
        Image.fromarray(mask).save(folder / f"c_{i}_mask.png")
    return folder


def test_png_mask_with_more_than_two_grey_levels_is_refused(tmp_path):
    folder = slices_folder(tmp_path / "s", 2)
    mask = np.zeros((32, 32), np.uint8)
    mask[2:6, 2:6], mask[20:24, 20:24] = 128, 255  # e.g. an anti-aliased or label-map "mask"
    Image.fromarray(mask).save(folder / "c_0_mask.png")
    with pytest.raises(InputError, match=r"c_0_mask.png is not a binary mask: it holds 3 grey levels \(0, 128, 255\)"):
        load_slices(folder)


def test_binary_mask_with_any_foreground_value_is_read_as_foreground(tmp_path):
    slices = load_slices(slices_folder(tmp_path / "s", 2, mask_values=(0, 7)))
    assert slices.masks.sum() == 2 * 64 and slices.masks.dtype == bool  # two 8×8 squares


def test_a_gap_that_swallows_every_training_slice_is_refused():
    # one case, 3 slices, 2 folds: block {0,1} validates, gap 2 removes slice 2 → nothing to train on
    with pytest.raises(InputError, match="fold 1 of 2 has no training slice left"):
        kfold_slices(["c"] * 3, np.arange(3), 2, gap_slices=2)
    folds = kfold_slices(["c"] * 3, np.arange(3), 2, gap_slices=0)
    assert [f.train.tolist() for f in folds] == [[2], [0, 1]]


def test_cross_validation_refuses_all_empty_masks_and_single_slice_folds(tmp_path):
    pytest.importorskip("monai")
    from vascalc.learn.seg2d import Seg2DConfig, cross_validate

    config = Seg2DConfig(size_px=32, epochs=1, batch_size=2, n_folds=2, gap_slices=0)
    with pytest.raises(InputError, match="all 4 masks are empty"):
        cross_validate(load_slices(slices_folder(tmp_path / "e", 4, empty_masks=True)), config)
    with pytest.raises(InputError, match="fold 1 of 2 would train on 1 slice"):
        cross_validate(load_slices(slices_folder(tmp_path / "t", 3)), config)


@pytest.mark.parametrize("kwargs, fragment", [({"learning_rate": -1.0}, "learning rate must be a positive"),
                                              ({"learning_rate": float("nan")}, "learning rate must be a positive"),
                                              ({"gap_slices": -1}, "gap must be 0 or more"),
                                              ({"time_budget_s": 0.0}, "time budget must be a positive")])
def test_impossible_training_options_are_refused(kwargs, fragment):
    from vascalc.learn.seg2d import Seg2DConfig

    with pytest.raises(InputError, match=fragment):
        Seg2DConfig(**kwargs)


def test_model_folder_inside_the_training_data_is_refused_and_nothing_written(vascalc_cli, tmp_path):
    pytest.importorskip("monai")
    folder = slices_folder(tmp_path / "s", 4)
    before = sorted(p.name for p in folder.iterdir())
    code, _, err = vascalc_cli("train", "seg2d", "-i", str(folder), "-o", str(folder / "model"),
                        "--folds", "2", "--epochs", "1", "--size", "32")
    assert code == 2 and len(err) == 1 and "lies inside the input folder" in err[0]
    assert sorted(p.name for p in folder.iterdir()) == before


def test_multilabel_volume_mask_needs_mask_labels(tmp_path):
    from vascalc.imaging import Grid, Volume, save_labels_nifti, save_volume_nifti

    grid = Grid(shape=(3, 8, 8), spacing_mm=(2.0, 1.0, 1.0))
    labels = np.zeros(grid.shape, np.uint8)
    labels[:, 1:3, 1:3], labels[:, 5:7, 5:7] = 52, 7  # aorta and another structure
    save_volume_nifti(Volume(hu=np.zeros(grid.shape, np.int16), grid=grid), tmp_path / "case1_ct.nii.gz")
    save_labels_nifti(labels, grid, tmp_path / "case1_seg.nii.gz")
    with pytest.raises(InputError, match=r"case1_seg.nii.gz holds 2 labels \(7, 52\); pick the structure with --mask-labels"):
        load_slices(tmp_path)
    assert load_slices(tmp_path, mask_labels=(52,)).masks.sum() == 3 * 4  # one 2×2 square per slice
