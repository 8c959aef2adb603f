"""The 3-D patch segmenter (vascalc.learn.seg3d): resampling, normalisation, patch sampling with
hand-computed answers; a tiny training run that lowers the loss and beats an all-background
prediction; save/load round trip; refusals of missing or foreign model folders."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from vascalc.errors import InputError, OutputError  # noqa: E402
from vascalc.learn.seg3d import (  # noqa: E402
    IGNORE_LABEL, Normalisation, Seg3DCase, Seg3DConfig, _PatchSampler, class_dice, dice_ce_loss, fit_normalisation,
    load_seg3d,
    patch_start, predict_probabilities, prepare_case, resample_labels, save_seg3d, target_shape, train_seg3d,
)

CLASSES = ("background", "soft", "dense")
#: a network small enough for a few seconds of CPU; native spacing (no resampling)
TINY = dict(class_names=CLASSES, target_spacing_mm=(2.0, 2.0, 2.0), patch_size_vox=(8, 16, 16), filters=(4, 8, 16),
            batch_size=2, learning_rate=3e-2, foreground_probability=0.7)


def _case(seed: int) -> Seg3DCase:
    """Soft-tissue noise (40 ± 15 HU) with 3×3×3 blobs: class 1 at −300 HU (darker), class 2 at 1000 HU."""
    rng = np.random.default_rng(seed)
    hu = rng.normal(40.0, 15.0, (12, 24, 24)).astype(np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    for k, value in ((1, -300.0), (2, 1000.0), (1, -300.0), (2, 1000.0)):
        z, y, x = rng.integers(1, 9), rng.integers(1, 21), rng.integers(1, 21)
        labels[z:z + 3, y:y + 3, x:x + 3] = k
        hu[z:z + 3, y:y + 3, x:x + 3] = value + rng.normal(0, 15.0, (3, 3, 3))
    return Seg3DCase(hu, labels, (2.0, 2.0, 2.0), group=str(seed))


@pytest.fixture(scope="module")
def trained():
    cases = [_case(1), _case(2)]
    model, report = train_seg3d(cases, Seg3DConfig(iterations=100, seed=3, **TINY))
    return cases, model, report


def test_target_shape_keeps_extent():
    # 160 mm at 1 mm → 64 at 2.5 mm; 102 × 1.25 = 127.5 mm → 51; 118 × 1.25 = 147.5 → 59
    assert target_shape((160, 102, 118), (1.0, 1.25, 1.25), (2.5, 2.5, 2.5)) == (64, 51, 59)
    assert target_shape((3, 1, 1), (1.0, 1.0, 1.0), (5.0, 5.0, 5.0)) == (1, 1, 1)


def test_resample_labels_keeps_a_single_voxel_lesion():
    labels = np.zeros((8, 8, 8), np.uint8)
    labels[3, 4, 5] = 2
    # halving each axis: the voxel is 1/8 of its 2×2×2 footprint, above the 5 % default fraction
    down = resample_labels(labels, (4, 4, 4), 3, 0.05)
    assert down.dtype == np.uint8 and set(np.unique(down)) == {0, 2}
    assert down[1, 2, 2] == 2
    # at a 20 % fraction the same voxel is too small to keep
    assert not resample_labels(labels, (4, 4, 4), 3, 0.2).any()


def test_fit_normalisation_is_the_clipped_mean_and_sd():
    a = np.array([-2000.0, 0.0, 100.0, 3000.0], np.float32)
    norm = fit_normalisation([a[:2], a[2:]], (-250.0, 1250.0))
    clipped = np.array([-250.0, 0.0, 100.0, 1250.0])
    assert norm.mean_hu == pytest.approx(clipped.mean())
    assert norm.sd_hu == pytest.approx(clipped.std())
    assert norm.apply(np.array([1250.0]))[0] == pytest.approx((1250.0 - clipped.mean()) / clipped.std(), rel=1e-6)
    assert norm.floor == pytest.approx((-250.0 - clipped.mean()) / clipped.std())


def test_patch_start_contains_the_centre_and_stays_inside():
    rng = np.random.default_rng(0)
    for _ in range(200):
        centre = rng.integers(0, [20, 30, 40])
        s = np.array(patch_start((20, 30, 40), (8, 16, 16), rng, centre))
        assert np.all(s >= 0) and np.all(s + [8, 16, 16] <= [20, 30, 40])
        assert np.all((centre >= s) & (centre < s + [8, 16, 16]))


def test_sampler_oversamples_foreground():
    case = _case(5)
    config = Seg3DConfig(**{**TINY, "foreground_probability": 1.0})
    norm = fit_normalisation([case.image_hu], config.clip_hu)
    sampler = _PatchSampler([prepare_case(case, config, norm)], config, norm.floor, seed=0)
    batches = [sampler.batch() for _ in range(20)]
    assert batches[0][0].shape == (2, 1, 8, 16, 16) and batches[0][1].shape == (2, 1, 8, 16, 16)
    # every patch centred on foreground holds some
    assert all((y > 0).reshape(2, -1).any(axis=1).all() for _, y in batches)


def test_config_refuses_bad_patches_and_classes():
    with pytest.raises(InputError, match="multiple of"):
        Seg3DConfig(patch_size_vox=(30, 48, 48))
    with pytest.raises(InputError, match="background"):
        Seg3DConfig(class_names=("background",))
    with pytest.raises(InputError, match="three stages"):
        Seg3DConfig(filters=(8, 16))


def test_training_lowers_loss_and_beats_background(trained):
    cases, model, report = trained
    losses = report["loss_per_10_steps"]
    assert report["steps_run"] == 100 and len(losses) == 10
    assert losses[-1] < 0.5 * losses[0]
    prob = predict_probabilities(model, cases[0].image_hu, cases[0].spacing_mm)
    assert prob.shape == (3, *cases[0].image_hu.shape)
    np.testing.assert_allclose(prob.sum(axis=0), 1.0, atol=1e-5)
    scores = class_dice(np.argmax(prob, axis=0), cases[0].labels, CLASSES)
    background_only = class_dice(np.zeros_like(cases[0].labels), cases[0].labels, CLASSES)
    assert background_only == {"soft": 0.0, "dense": 0.0}
    # an all-background prediction scores 0 on both classes; the model finds both
    assert min(scores.values()) > 0.4


def test_same_seed_same_model():
    cases = [_case(1)]
    config = Seg3DConfig(iterations=3, seed=7, **TINY)
    a, _ = train_seg3d(cases, config)
    b, _ = train_seg3d(cases, config)
    for (ka, va), (kb, vb) in zip(a.network.state_dict().items(), b.network.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)


def test_validation_fold_reports_dice():
    cases = [_case(s) for s in (1, 2, 3, 4)]
    _, report = train_seg3d(cases, Seg3DConfig(iterations=2, n_folds=2, validation_fold=1, **TINY))
    assert report["n_training_cases"] == 2 and report["n_validation_cases"] == 2
    assert set(report["validation_dice"]) == {"soft", "dense"}


def test_save_load_round_trip(trained, tmp_path):
    cases, model, _ = trained
    folder = save_seg3d(model, tmp_path / "m", description="synthetic blobs")
    meta = json.loads((folder / "model.json").read_text())
    assert meta["format"] == "vascalc-seg3d" and meta["class_names"] == list(CLASSES)
    assert "group" not in json.dumps(meta)  # no case identifiers in the model
    loaded = load_seg3d(folder)
    assert loaded.normalisation == model.normalisation and loaded.config == model.config
    a = predict_probabilities(model, cases[1].image_hu, cases[1].spacing_mm)
    b = predict_probabilities(loaded, cases[1].image_hu, cases[1].spacing_mm)
    assert np.array_equal(a, b)


def test_bad_model_folders_are_input_errors(tmp_path, trained):
    with pytest.raises(InputError, match="no model.json"):
        load_seg3d(tmp_path / "missing")
    foreign = tmp_path / "seg2d"
    foreign.mkdir()
    (foreign / "model.json").write_text(json.dumps({"format": "vascalc-seg2d", "format_version": 1}))
    with pytest.raises(InputError, match="not a vascalc 3-D segmentation model"):
        load_seg3d(foreign)
    no_weights = save_seg3d(trained[1], tmp_path / "w")
    (no_weights / "weights.pt").unlink()
    with pytest.raises(InputError, match="missing"):
        load_seg3d(no_weights)
    with pytest.raises(OutputError):
        save_seg3d(trained[1], no_weights.parent / "w")  # not empty (model.json is still there)


def test_training_refuses_unlabelled_or_out_of_range_cases():
    case = _case(1)
    with pytest.raises(InputError, match="labels"):
        train_seg3d([Seg3DCase(case.image_hu, None, case.spacing_mm)], Seg3DConfig(**TINY))
    bad = Seg3DCase(case.image_hu, np.full(case.image_hu.shape, 5, np.uint8), case.spacing_mm)
    with pytest.raises(InputError, match="exceeds"):
        train_seg3d([bad], Seg3DConfig(**TINY))


def test_normalisation_round_trips_through_json():
    norm = Normalisation(-250.0, 1250.0, 12.5, 300.0)
    assert Normalisation(**json.loads(json.dumps(norm.__dict__))) == norm


def test_dice_ce_loss_hand_computed_and_ignores_voxels():
    target = torch.tensor([[[[0, 1], [2, IGNORE_LABEL]]]])              # (batch 1, z 1, y 2, x 2)
    # confident and right on the three kept voxels: loss ≈ 0 whatever the ignored voxel says
    logits = torch.full((1, 3, 1, 2, 2), -20.0)
    logits[0, 0, 0, 0, 0] = logits[0, 1, 0, 0, 1] = logits[0, 2, 0, 1, 0] = 20.0
    logits[0, 1, 0, 1, 1] = 40.0
    assert float(dice_ce_loss(logits, target)) == pytest.approx(0.0, abs=1e-6)
    # uniform logits: Dice per foreground class = 2·(1/3) / (3·(1/3) + 1) = 1/3, CE = ln 3
    flat = torch.zeros((1, 3, 1, 2, 2))
    assert float(dice_ce_loss(flat, target)) == pytest.approx(1.0 - 1.0 / 3.0 + np.log(3.0), rel=1e-4)
    # class weights change the CE only through its weighted mean, still ln 3 when all logits tie
    w = torch.tensor([1.0, 10.0, 10.0])
    assert float(dice_ce_loss(flat, target, w)) == pytest.approx(1.0 - 1.0 / 3.0 + np.log(3.0), rel=1e-4)


def test_label_halo_and_loss_region():
    hu = np.zeros((6, 6, 6), np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    labels[3, 3, 3] = 1
    hu[3, 3, 3] = 500.0
    hu[0, 0, 0] = 300.0                                                  # a bright voxel that is not labelled
    case = Seg3DCase(hu, labels, (1.0, 1.0, 1.0))
    base = dict(class_names=CLASSES, target_spacing_mm=(1.0, 1.0, 1.0), patch_size_vox=(4, 4, 4), filters=(4, 8, 16))
    norm = Normalisation(-250.0, 1250.0, 0.0, 100.0)
    _, grown = prepare_case(case, Seg3DConfig(label_dilation_vox=1, **base), norm)
    assert (grown == 1).sum() == 27 and grown[2:5, 2:5, 2:5].all()
    _, region = prepare_case(case, Seg3DConfig(label_dilation_vox=1, loss_region_hu=130.0, **base), norm)
    # kept: the 27 labelled voxels and the bright voxel with its 6-neighbour halo clipped at the corner (4)
    assert (region == 1).sum() == 27 and (region == 0).sum() == 4
    assert (region == IGNORE_LABEL).sum() == 6 ** 3 - 31
