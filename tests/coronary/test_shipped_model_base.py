"""Round 6 (docs/coronary.md): the shipped model, trained on 500 phantoms instead of 220, counts a
small left-main / proximal-LAD lesion at the heart base of development phantom 500083 that the
220-phantom model rejected (P(coronary) 0.44 → 0.82), and records where it was trained (since
round 9b: 1500 phantoms, chosen on the fresh validation cohort 600000–600239) and with which forests
(since round 10: 240 trees of depth ≤ 12 each, chosen on the fresh validation cohort 610000–610239)."""

from __future__ import annotations

import pytest

from vascalc.coronary.assign import LesionModel, default_model_path
from vascalc.coronary.training import DEV_SEED_BASE, TRAIN_SEED_BASE, make_case, truth_image_agatston
from vascalc.workflows.coronary import score_coronary

pytestmark = pytest.mark.skipif(not default_model_path().exists(), reason="no shipped model")


def test_shipped_model_training_cohort():
    info = LesionModel.load(default_model_path()).info
    # 1500 training phantoms (round 9b), all below the development seeds (never the dev or bench phantoms)
    assert info["training_seeds"] == [TRAIN_SEED_BASE, TRAIN_SEED_BASE + 1499]
    assert info["training_seeds"][1] < DEV_SEED_BASE
    assert sum(info["class_counts"].values()) == 42073 and info["class_counts"]["lad"] == 1297


def test_shipped_model_forest_settings():
    model = LesionModel.load(default_model_path())
    # round 10: 240 trees per forest instead of 60, depth still ≤ 12 (the training defaults)
    assert model.info["n_trees"] == 240 and model.info["max_depth"] == 12
    assert len(model.trees) == 240 and len(model.artery_trees) == 240
    assert max(t["depth"] for t in model.trees + model.artery_trees) == 12


def test_heart_base_lad_lesion_counted():
    seed = DEV_SEED_BASE + 83
    phantom = make_case(seed)
    truth = truth_image_agatston(phantom, make_case(seed, noise_free=True).volume.hu)
    result = score_coronary(phantom.volume, segmenter="builtin")
    assert truth["lad"]["agatston_3mm"] > 0                       # the reference calls the LAD present
    assert result.artery("lad").agatston_3mm > 0                   # round 4 missed it (detector P 0.44)
    lad = [lesion for lesion in result.lesions if lesion.counted and lesion.artery == "lad"]
    assert lad and max(1.0 - lesion.probabilities["none"] for lesion in lad) >= 0.7
    # nothing false is counted in this case: every counted artery is present in the reference
    assert all(truth[a.name]["agatston_3mm"] > 0 for a in result.arteries if a.agatston_3mm > 0)
