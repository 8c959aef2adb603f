"""Training, ensembling, saving and applying the 2-D U-Net on synthetic discs (small and fast)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from vascalc.imaging import Grid, Volume  # noqa: E402
from vascalc.learn import SliceSet, dice_scores  # noqa: E402
from vascalc.learn.infer import canonical_label, predict_volume  # noqa: E402
from vascalc.learn.models import NetworkSpec  # noqa: E402
from vascalc.learn.seg2d import (  # noqa: E402
    Seg2DConfig, bce_jaccard_loss, predict_probabilities, to_network_input, train_network, train_seg2d,
)
from vascalc.learn.store import load_ensemble  # noqa: E402

SIZE = 32
#: small network so the whole file runs in seconds on 2 cores
TINY = NetworkSpec(backbone="resnet10", decoder_channels=(32, 16, 16, 8, 8))


def _discs(n: int, seed: int, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Bright discs (radius 3–6 px) on a noisy darker background: images in [0, 1] and masks."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.empty((n, size, size), np.float32)
    masks = np.empty((n, size, size), bool)
    for i in range(n):
        cy, cx = rng.uniform(8, size - 8, 2)
        radius = rng.uniform(3, 6)
        masks[i] = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        images[i] = np.clip(0.3 + 0.4 * masks[i] + rng.normal(0, 0.05, (size, size)), 0, 1)
    return images, masks


def _slice_set(n: int = 24, seed: int = 0) -> SliceSet:
    images, masks = _discs(n, seed)
    return SliceSet(images=images, masks=masks, case_ids=("synthetic",) * n, slice_index=np.arange(n),
                    normalisation="window", window_hu=(-200.0, 1000.0), source_format="volume")


CONFIG = Seg2DConfig(size_px=SIZE, epochs=10, batch_size=4, learning_rate=3e-3, n_folds=2, gap_slices=1,
                     augment=False, network=TINY)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One 2-fold training run shared by the tests below (the expensive part)."""
    model_dir = tmp_path_factory.mktemp("model") / "discs"
    report = train_seg2d(_slice_set(), model_dir, CONFIG, description="synthetic discs")
    return model_dir, report


def test_loss_is_bce_plus_one_minus_soft_iou():
    logits = torch.tensor([[[[2.0, -1.0], [0.0, 3.0]]]])
    target = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    p = torch.sigmoid(logits)
    bce = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    iou = (p * target).sum() / (p.sum() + target.sum() - (p * target).sum())
    assert float(bce_jaccard_loss(logits, target)) == pytest.approx(float(bce + 1 - iou), abs=1e-5)


def test_training_lowers_loss_and_beats_all_background(trained):
    model_dir, report = trained
    for fold in report["folds"]:
        assert fold["loss_last_epoch"] < 0.6 * fold["loss_first_epoch"]
    # all-background prediction scores Dice 0 on every slice that holds a disc
    images, masks = _discs(12, seed=99)
    background = dice_scores(np.zeros_like(masks), masks)
    assert background.global_dice == 0.0
    labels = predict_volume(model_dir, _volume(images))
    scores = dice_scores(labels.labels.astype(bool), masks)
    assert scores.global_dice > 0.7 and scores.per_slice_mean_dice > 0.7
    assert report["mean_over_folds"]["per_slice_mean_dice"] > 0.7


def test_report_and_metadata_files(trained):
    model_dir, report = trained
    names = sorted(p.name for p in Path(model_dir).iterdir())
    assert names == ["cv_report.json", "cv_report.md", "fold_0.pt", "fold_1.pt", "model.json"]
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["network"]["backbone"] == "resnet10" and meta["input_size_px"] == SIZE
    assert meta["window_hu"] == [-200.0, 1000.0] and meta["normalisation"] == "window"
    assert [f["fold"] for f in meta["cross_validation"]["folds"]] == [0, 1]
    assert report["split"] == "contiguous_blocks"
    assert report["folds"][0]["validation_slice_index_range"] == [0, 11]
    md = (model_dir / "cv_report.md").read_text()
    assert "83.4 %" in md and "per-slice mean Dice" in md and "global Dice" in md


def _volume(images: np.ndarray, direction=(1, 0, 0, 0, 1, 0, 0, 0, 1)) -> Volume:
    """Discs as a CT: [0, 1] mapped onto the training window -200..1000 HU."""
    hu = (images * 1200 - 200).round().astype(np.int16)
    return Volume(hu=hu, grid=Grid(shape=hu.shape, spacing_mm=(2.0, 0.7, 0.7), direction=direction))


def test_ensemble_is_mean_of_member_probabilities(trained):
    model_dir, _ = trained
    ensemble = load_ensemble(model_dir)
    images, _ = _discs(3, seed=5)
    members = [predict_probabilities([net], images, SIZE) for net in ensemble.networks]
    both = predict_probabilities(list(ensemble.networks), images, SIZE)
    np.testing.assert_allclose(both, (members[0] + members[1]) / 2, atol=1e-6)
    assert not np.allclose(members[0], members[1])  # two different models


def test_save_load_round_trip_gives_identical_predictions(trained, tmp_path):
    model_dir, _ = trained
    first = load_ensemble(model_dir)
    second = load_ensemble(model_dir)
    images, _ = _discs(2, seed=6)
    np.testing.assert_array_equal(
        predict_probabilities(list(first.networks), images, SIZE),
        predict_probabilities(list(second.networks), images, SIZE),
    )
    assert first.label_name == "aorta" and first.threshold == 0.5


def test_predict_volume_grid_names_and_orientation(trained):
    model_dir, _ = trained
    images, masks = _discs(4, seed=7, size=40)  # another slice size: resized to 32 and back
    labels = predict_volume(model_dir, _volume(images))
    assert labels.labels.shape == (4, 40, 40) and labels.names == {1: "aorta"}
    assert labels.grid.spacing_mm == (2.0, 0.7, 0.7)
    # the same anatomy stored with flipped in-plane axes gives the same mask, stored flipped
    flipped = predict_volume(model_dir, _volume(images[:, ::-1, ::-1], direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1)))
    np.testing.assert_array_equal(flipped.labels, labels.labels[:, ::-1, ::-1])
    assert canonical_label("vessels") == "aorta"


def test_same_seed_same_training_and_inputs_resized():
    images, masks = _discs(8, seed=3)
    x = to_network_input(images[:, :24, :], SIZE)  # 24×32 padded to 32×32
    assert tuple(x.shape) == (8, 1, SIZE, SIZE) and float(x[:, :, :4].abs().sum()) == 0.0
    y = (to_network_input(masks.astype(np.float32), SIZE) >= 0.5).float()
    config = Seg2DConfig(size_px=SIZE, epochs=2, batch_size=4, network=TINY, augment=True)
    _, first = train_network(to_network_input(images, SIZE), y, config, seed=4)
    _, second = train_network(to_network_input(images, SIZE), y, config, seed=4)
    _, other = train_network(to_network_input(images, SIZE), y, config, seed=5)
    assert first == second and first != other


def test_cli_trains_from_png_folder(tmp_path):
    from PIL import Image
    from typer.testing import CliRunner

    from vascalc.cli.train import app

    images, masks = _discs(8, seed=11, size=40)
    data = tmp_path / "pngs"
    data.mkdir()
    for k, (image, mask) in enumerate(zip(images, masks)):
        grey = (image * 255).astype(np.uint8)
        Image.fromarray(np.dstack([grey] * 3 + [np.full_like(grey, 255)]), mode="RGBA").save(data / f"s_{k}_img.png")
        Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(data / f"s_{k}_mask.png")
    out = tmp_path / "model"
    result = CliRunner().invoke(app, ["seg2d", "--images", str(data), "-o", str(out), "--folds", "2", "--epochs", "1",
                                      "--size", "32", "--backbone", "resnet10", "--label", "vessels"])
    assert result.exit_code == 0, result.output
    assert "S4: 83.4 %" in result.output
    meta = json.loads((out / "model.json").read_text())
    assert meta["label_name"] == "aorta" and meta["normalisation"] == "slice_minmax"
    assert meta["window_hu"] == [-1000.0, 3000.0] and meta["training_data"]["n_slices"] == 8
    again = CliRunner().invoke(app, ["seg2d", "--images", str(data), "-o", str(out)])
    assert again.exit_code != 0 and "not empty" in str(again.exception)


def test_disagreeing_fold_models_mark_slices_uncertain(trained):
    import copy

    from vascalc.learn.store import Seg2DEnsemble

    model_dir, _ = trained
    good = load_ensemble(model_dir)
    images, masks = _discs(5, seed=12)
    volume = _volume(images)
    agreeing = Seg2DEnsemble(networks=(good.networks[0], good.networks[0]), metadata=good.metadata)
    assert predict_volume(agreeing, volume).uncertain_slices == {}
    silent = copy.deepcopy(good.networks[0])
    with torch.no_grad():
        silent.segmentation_head[0].bias.fill_(-50.0)  # a member that never predicts a vessel
    disagreeing = Seg2DEnsemble(networks=(good.networks[0], silent), metadata=good.metadata)
    labels = predict_volume(disagreeing, volume)
    assert labels.uncertain_slices == {"aorta": (0, 1, 2, 3, 4)}


def test_model_backend_through_the_segment_interface(trained):
    """``--segmenter model:PATH``: the ensemble's vessel, minus whatever the built-in skeleton calls bone."""
    from vascalc.anatomy.builtin.landmarks import segment_bones
    from vascalc.anatomy.segment import segment

    model_dir, _ = trained
    images, _ = _discs(4, seed=8, size=40)
    volume = _volume(images)
    labels = segment(volume, backend=f"model:{model_dir}")
    model_only = predict_volume(model_dir, volume).mask("aorta")
    bone = segment_bones(volume).bone_mask()
    assert model_only.any()
    np.testing.assert_array_equal(labels.mask("aorta"), model_only & ~bone)
