"""The 3-D segmentation backend as a coronary assigner: the voxel vote with hand-computed answers,
painted lesions in a chest phantom assigned as a model of known output predicts, a tiny training
run on small chest-phantom crops, and refusals of bad model paths."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("monai")

from vascalc.coronary.heart import heart_crop_box  # noqa: E402
from vascalc.coronary.seg3d_backend import (  # noqa: E402
    CLASS_NAMES, Seg3DAssigner, assign_from_probabilities, case_from_phantom, coronary_seg3d_config,
    load_seg3d_assigner, train_coronary_seg3d,
)
from vascalc.errors import InputError  # noqa: E402
from vascalc.learn.seg3d import Normalisation, Seg3DConfig, Seg3DModel, save_seg3d  # noqa: E402
from vascalc.phantoms import make_chest_phantom  # noqa: E402
from vascalc.phantoms.types import PlaqueSpec  # noqa: E402
from vascalc.workflows.coronary import score_coronary  # noqa: E402

SMALL = dict(shape=(40, 112, 112), spacing_mm=(3.0, 2.5, 2.5), vary_anatomy=False, distractors="none",
             motion_blur_mm=0.0)


def test_vote_hand_computed():
    prob = np.zeros((4, 1, 1, 10), np.float32)
    prob[0] = 1.0
    prob[:, 0, 0, 0:3] = np.array([0.1, 0.1, 0.7, 0.1])[:, None]    # cluster 1: all LAD
    prob[:, 0, 0, 3:5] = np.array([0.1, 0.6, 0.2, 0.1])[:, None]    # cluster 2: 2 RCA voxels …
    prob[:, 0, 0, 5] = [0.5, 0.2, 0.2, 0.1]                         # … and 1 background voxel
    prob[:, 0, 0, 6:9] = np.array([0.2, 0.1, 0.1, 0.6])[:, None]    # cluster 3: 1 LCX voxel of 3
    prob[:, 0, 0, 7:9] = np.array([0.6, 0.1, 0.1, 0.2])[:, None]
    clusters = np.array([[[1, 1, 1, 2, 2, 2, 3, 3, 3, 0]]])
    mean, cls, conf = assign_from_probabilities(prob, clusters, 3)
    assert cls.tolist() == [2, 1, 0]
    np.testing.assert_allclose(conf, [0.7, (0.6 + 0.6 + 0.2) / 3, (0.2 + 0.6 + 0.6) / 3], rtol=1e-6)
    np.testing.assert_allclose(mean[1], [(0.1 + 0.1 + 0.5) / 3, (0.6 + 0.6 + 0.2) / 3, 0.2, 0.1], rtol=1e-6)
    # a stricter rule: cluster 2 has only 2/3 of its voxels on an artery
    assert assign_from_probabilities(prob, clusters, 3, 0.7)[1].tolist() == [2, 0, 0]
    with pytest.raises(InputError):
        assign_from_probabilities(prob, clusters, 3, 0.0)


def test_heart_crop_box_matches_the_margin():
    mask = np.zeros((20, 40, 40), bool)
    mask[5:10, 10:20, 12:30] = True
    box = heart_crop_box(mask, (3.0, 2.0, 2.0), margin_mm=4.0)
    # (4 + 2) mm → 2 slices at 3 mm, 3 voxels at 2 mm; clipped at the volume's edges
    assert box == (slice(3, 12), slice(7, 23), slice(9, 33))
    with pytest.raises(InputError):
        heart_crop_box(np.zeros((3, 3, 3), bool), (1.0, 1.0, 1.0))


class _ByHU(torch.nn.Module):
    """A model of known output: LCX where the voxel exceeds 700 HU, background elsewhere (its input
    is HU / 1, see the normalisation below); RCA and LAD never."""

    def forward(self, x):
        never = torch.full_like(x, -1e3)
        return torch.cat([torch.zeros_like(x), never, never, (x - 700.0) / 10.0], dim=1)


@pytest.fixture(scope="module")
def painted():
    phantom = make_chest_phantom(11, plaques="none", noise_sd_hu=10.0, **SMALL)
    hu = phantom.volume.hu.copy()
    heart = phantom.labels.labels == 10
    z, y, x = (int(round(c)) for c in np.argwhere(heart).mean(axis=0))
    hu[z - 1:z + 2, y - 2:y + 2, x + 4:x + 8] = 900.0   # lesion A: 900 HU → LCX
    hu[z - 1:z + 2, y - 2:y + 2, x - 8:x - 4] = 400.0   # lesion B: 400 HU → background
    volume = type(phantom.volume)(hu=hu, grid=phantom.volume.grid, info=phantom.volume.info)
    config = Seg3DConfig(class_names=CLASS_NAMES, target_spacing_mm=SMALL["spacing_mm"], patch_size_vox=(16, 32, 32),
                         filters=(4, 8, 16))
    model = Seg3DModel(network=_ByHU().eval(), config=config, normalisation=Normalisation(-1000.0, 3000.0, 0.0, 1.0))
    return volume, phantom.labels, Seg3DAssigner(model)


def test_painted_lesions_follow_the_model(painted):
    volume, labels, assigner = painted
    result = score_coronary(volume, heart=labels, model=assigner, force=True)
    assert result.method["assignment"] == "seg3d"
    by_peak = {round(lesion.peak_hu): lesion for lesion in result.lesions}
    a, b = by_peak[900], by_peak[400]
    assert a.artery == "lcx" and a.counted and a.method == "seg3d"
    assert a.confidence == pytest.approx(1.0 / (1.0 + np.exp(-20.0)), rel=1e-5)   # softmax of logits 0 and 20
    assert b.artery == "not_coronary" and not b.counted
    assert b.probabilities["none"] == pytest.approx(1.0 / (1.0 + np.exp(-30.0)), rel=1e-5)
    lcx = result.artery("lcx")
    assert lcx.n_lesions == 1 and lcx.n_calcium_voxels == a.n_voxels == 3 * 4 * 4
    assert result.artery("rca").n_lesions == 0 and result.artery("lad").n_lesions == 0


def test_tiny_training_on_phantom_crops(tmp_path):
    cases = []
    # dense plaques (6 mm, half the circumference, 800 mg/cm³) where test_pipeline puts them
    for seed, vessel, start_mm in ((21, "rca", 40.0), (22, "lad", 25.0), (23, "lcx", 40.0)):
        kwargs = dict(plaques=[PlaqueSpec(vessel, start_mm, 6.0, 180.0, 0.0, 1.0, 800.0)], **SMALL)
        phantom = make_chest_phantom(seed, noise_sd_hu=10.0, **kwargs)
        clean = make_chest_phantom(seed, noise_sd_hu=0.0, **kwargs)
        cases.append(case_from_phantom(phantom, clean.volume.hu, phantom.labels.labels == 10, group=str(seed)))
    # each crop carries its artery's calcium, and only that artery's
    for case, k in zip(cases, (1, 2, 3)):
        assert set(np.unique(case.labels)) == {0, k}
    config = coronary_seg3d_config(target_spacing_mm=SMALL["spacing_mm"], patch_size_vox=(8, 16, 16),
                                   filters=(4, 8, 16), iterations=60, learning_rate=3e-2, foreground_probability=0.9)
    report = train_coronary_seg3d([21, 22, 23], tmp_path / "m", config, cases=cases)
    losses = report["loss_per_10_steps"]
    assert losses[-1] < 0.8 * losses[0]
    assigner = load_seg3d_assigner(f"seg3d:{tmp_path / 'm'}")
    assert assigner.info["training_seeds"] == [21, 23] and assigner.info["steps_run"] == 60
    # round trip: the loaded model's voxel probabilities are those of a second load
    again = load_seg3d_assigner(tmp_path / "m")
    p1 = assigner.probabilities(cases[0].image_hu, cases[0].spacing_mm)
    assert np.array_equal(p1, again.probabilities(cases[0].image_hu, cases[0].spacing_mm))
    # the loss covers the voxels reaching 130 HU: there, the model beats an all-background
    # prediction (Dice 0 for every artery) on the training crops
    from vascalc.learn.seg3d import class_dice

    scores = []
    for case, k in zip(cases, (1, 2, 3)):
        bright = case.image_hu >= 130.0
        pred = np.argmax(assigner.probabilities(case.image_hu, case.spacing_mm), axis=0)
        scores.append(class_dice(pred[bright], case.labels[bright], CLASS_NAMES)[CLASS_NAMES[k]])
    assert np.mean(scores) > 0.3


def test_bad_model_paths(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_seg3d_assigner("seg3d:" + str(tmp_path / "nothing"))
    with pytest.raises(InputError, match="not found"):
        score_coronary(np.zeros((2, 2, 2)), model="seg3d:" + str(tmp_path / "nothing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no model.json"):
        load_seg3d_assigner(tmp_path / "empty")
    # a 3-D model of other classes is not a coronary model
    config = Seg3DConfig(class_names=("background", "aorta"), patch_size_vox=(16, 32, 32), filters=(4, 8, 16))
    from vascalc.learn.seg3d import build_network_3d

    other = Seg3DModel(network=build_network_3d(config.network), config=config,
                       normalisation=Normalisation(-250.0, 1250.0, 0.0, 100.0))
    save_seg3d(other, tmp_path / "aorta")
    with pytest.raises(InputError, match="not the coronary"):
        load_seg3d_assigner(tmp_path / "aorta")
