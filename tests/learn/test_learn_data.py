"""vascalc.learn without torch: file pairing, PNG/volume loading, normalisation, splits, Dice, errors."""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vascalc.errors import DependencyError, InputError
from vascalc.imaging import Grid, Volume, save_labels_nifti, save_volume_nifti
from vascalc.learn import dice, dice_scores, kfold_slices, load_slices, pair_files, per_slice_dice
from vascalc.learn.data import natural_key, normalise_slices, slice_minmax, to_display_view, window_hu


def _write_png_pair(folder: Path, case: str, k: int, grey: np.ndarray, mask: np.ndarray) -> None:
    rgba = np.dstack([grey, grey, grey, np.full_like(grey, 255)]).astype(np.uint8)
    Image.fromarray(rgba, mode="RGBA").save(folder / f"{case}_{k}_img.png")
    Image.fromarray((mask * 255).astype(np.uint8), mode="L").save(folder / f"{case}_{k}_mask.png")


def test_natural_order_puts_9_before_80():
    names = ["6572_80_img.png", "6572_9_img.png", "6572_25_img.png"]
    assert sorted(names, key=natural_key) == ["6572_9_img.png", "6572_25_img.png", "6572_80_img.png"]


def test_png_pairs_rgba_to_grey_and_numeric_slice_order(tmp_path):
    for k in (9, 80, 25):
        grey = np.zeros((6, 8), np.uint8)
        grey[0, 0] = 255  # brightest pixel, as the DeepCalc exports
        grey[2, 3] = 3 * k  # a value that identifies the slice
        mask = np.zeros((6, 8), np.uint8)
        mask[2:4, 3:5] = 1
        _write_png_pair(tmp_path, "6572", k, grey, mask)
    slices = load_slices(tmp_path)
    assert slices.slice_index.tolist() == [9, 25, 80]
    assert slices.case_ids == ("6572", "6572", "6572")
    assert slices.source_format == "png" and slices.normalisation == "slice_minmax"
    # slice-minmax: 0 → 0, 255 → 1, 3k → 3k/255
    assert slices.images[:, 2, 3] == pytest.approx([27 / 255, 75 / 255, 240 / 255])
    assert slices.images.max() == 1.0 and slices.images.min() == 0.0
    assert slices.masks.sum(axis=(1, 2)).tolist() == [4, 4, 4]
    assert slices.describe()["n_slices_with_mask"] == 3
    assert "6572" not in str(slices.describe())  # case names never reach metadata


def test_pairing_errors(tmp_path):
    grey = np.zeros((4, 4), np.uint8)
    _write_png_pair(tmp_path, "a", 1, grey, grey)
    (tmp_path / "a_2_img.png").write_bytes((tmp_path / "a_1_img.png").read_bytes())
    with pytest.raises(InputError, match="no mask for 1 image"):
        pair_files(tmp_path)
    with pytest.raises(InputError, match="no such file or folder"):
        pair_files(tmp_path / "nothing*.png")


def test_window_and_minmax_values():
    hu = np.array([[-1000, -200, 400, 1000, 3000]], dtype=np.int16)
    assert window_hu(hu, (-200, 1000))[0].tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])
    flat = slice_minmax(np.full((1, 3, 3), 7.0))
    assert np.all(flat == 0)
    ramp = slice_minmax(np.arange(9, dtype=float).reshape(1, 3, 3) + 100)
    assert ramp[0, 2, 2] == 1.0 and ramp[0, 0, 1] == pytest.approx(1 / 8)
    # slice_minmax after clipping to a window: values beyond it saturate
    clipped = normalise_slices(np.array([[[-2000.0, 0.0, 5000.0]]]), "slice_minmax", (-1000.0, 3000.0))
    assert clipped.ravel().tolist() == pytest.approx([0.0, 0.25, 1.0])
    with pytest.raises(InputError):
        window_hu(hu, (10, 10))


def test_display_view_flips_to_anterior_up_patient_right_left():
    array = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    lps = Grid(shape=(2, 3, 4), spacing_mm=(1, 1, 1))
    assert np.array_equal(to_display_view(array, lps), array)
    ras = Grid(shape=(2, 3, 4), spacing_mm=(1, 1, 1), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
    flipped = to_display_view(array, ras)
    assert np.array_equal(flipped, array[:, ::-1, ::-1])
    assert np.array_equal(to_display_view(flipped, ras), array)  # its own inverse


def test_volume_pairs_select_label_and_orient(tmp_path):
    grid = Grid(shape=(3, 5, 6), spacing_mm=(2.0, 0.5, 0.5), direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1))
    hu = np.full(grid.shape, -200, np.int16)
    hu[:, 1, 2] = 1000
    labels = np.zeros(grid.shape, np.uint8)
    labels[:, 1, 2] = 52
    labels[:, 3, 3] = 7
    save_volume_nifti(Volume(hu=hu, grid=grid), tmp_path / "case1_ct.nii.gz")
    save_labels_nifti(labels, grid, tmp_path / "case1_seg.nii.gz")
    slices = load_slices(tmp_path, window=(-200, 1000), mask_labels=(52,))
    assert len(slices) == 3 and slices.case_ids == ("case1",) * 3
    assert slices.slice_index.tolist() == [0, 1, 2]
    assert slices.pixel_spacing_mm == (0.5, 0.5)
    # display view of an RAS-direction grid flips both in-plane axes: (1, 2) → (3, 3)
    assert slices.masks.sum() == 3 and np.all(slices.masks[:, 3, 3])
    assert np.all(slices.images[:, 3, 3] == 1.0) and slices.images.sum() == 3.0


def test_contiguous_block_split_has_no_neighbour_leakage():
    cases = ("6572",) * 60
    index = np.arange(25, 85)
    folds = kfold_slices(cases, index, 4, gap_slices=2)
    validated = np.concatenate([f.validation for f in folds])
    assert sorted(validated.tolist()) == list(range(60))  # each slice validated exactly once
    for fold in folds:
        assert fold.rule == "contiguous_blocks"
        val, train = index[fold.validation], index[fold.train]
        assert np.all(np.diff(np.sort(val)) == 1)  # one contiguous block
        # no training slice within 2 slices of any validation slice
        assert np.abs(train[:, None] - val[None, :]).min() > 2
    assert [len(f.validation) for f in folds] == [15, 15, 15, 15]
    assert [len(f.train) for f in folds] == [43, 41, 41, 43]


def test_group_split_keeps_each_case_in_one_fold():
    cases = tuple(f"c{i}" for i in range(5) for _ in range(4))
    index = np.tile(np.arange(4), 5)
    folds = kfold_slices(cases, index, 3, seed=1)
    assert all(f.rule == "by_case" for f in folds)
    for fold in folds:
        train_cases = {cases[i] for i in fold.train}
        val_cases = {cases[i] for i in fold.validation}
        assert train_cases.isdisjoint(val_cases)
        assert len(fold.train) + len(fold.validation) == 20
    assert kfold_slices(cases, index, 3, seed=1)[0].validation.tolist() == folds[0].validation.tolist()
    with pytest.raises(InputError):
        kfold_slices(("a",) * 3, np.arange(3), 4)


def test_dice_global_and_per_slice_mean_by_hand():
    ref = np.zeros((3, 4, 4), bool)
    pred = np.zeros((3, 4, 4), bool)
    ref[0, :2, :2] = True  # 4 px
    pred[0, :2, :1] = True  # 2 px, all inside → slice Dice 2·2/6
    ref[1, 0, 0] = True  # 1 px, missed → slice Dice 0
    # slice 2 empty in both: skipped by per_slice_mean
    assert per_slice_dice(pred, ref)[:2].tolist() == pytest.approx([4 / 6, 0.0])
    assert np.isnan(per_slice_dice(pred, ref)[2])
    scores = dice_scores(pred, ref)
    assert scores.global_dice == pytest.approx(2 * 2 / (2 + 5))
    assert scores.per_slice_mean_dice == pytest.approx((4 / 6 + 0) / 2)
    assert (scores.n_slices_scored, scores.n_slices) == (2, 3)
    assert dice(np.zeros(3, bool), np.zeros(3, bool)) == 1.0
    # cross-check against scikit-learn's F1 (= Dice) on the flattened masks
    from sklearn.metrics import f1_score

    assert scores.global_dice == pytest.approx(f1_score(ref.ravel(), pred.ravel()))


def test_missing_torch_gives_dependency_error(monkeypatch):
    import sys

    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch" or name.startswith("torch.") or name == "monai" or name.startswith("monai."):
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.") or m == "monai" or m.startswith("monai.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", no_torch)
    from vascalc.learn import learn_available, require_torch
    from vascalc.learn.infer import predict_volume

    assert learn_available() is False
    with pytest.raises(DependencyError, match=r"pip install 'vascalc\[learn\]' -c constraints.txt"):
        require_torch()
    volume = Volume(hu=np.zeros((1, 4, 4), np.int16), grid=Grid(shape=(1, 4, 4), spacing_mm=(1, 1, 1)))
    with pytest.raises(DependencyError, match="torch"):
        predict_volume("/nonexistent-model", volume)
