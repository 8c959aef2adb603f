import numpy as np
import pytest

from vascalc.phantoms import PlaqueSpec, make_chest_phantom


@pytest.fixture(scope="module")
def chest():
    return make_chest_phantom(seed=7, plaque_rate=2.0)


def test_chest_labels_and_lad_includes_left_main(chest):
    assert {"heart", "aorta", "rca", "lad", "lcx"} <= set(chest.labels.present_names())
    assert chest.truth["lad_includes_left_main"] is True
    s = chest.truth["structures"]
    assert s["lad"]["n_lesions"] >= s["left_main"]["n_lesions"]
    lm_ids = {p["id"] for p in chest.truth["plaques"] if p["vessel"] == "left_main"}
    assert lm_ids <= set(s["lad"]["plaque_ids"])
    total = sum(s[n]["calcium_volume_mm3"] for n in ("aorta", "rca", "lad", "lcx"))
    assert chest.truth["total"]["calcium_volume_mm3"] == pytest.approx(total)


def test_coronary_plaques_are_thin_and_in_the_wall(chest):
    coronary = [p for p in chest.truth["plaques"] if p["vessel"] in ("rca", "lad", "lcx", "left_main")]
    assert coronary
    assert all(p["thickness_mm"] <= 1.0 for p in coronary)
    # each plaque's voxels lie on its vessel's label (lumen + wall), apart from partial-volume rims
    for p in coronary:
        label = "lad" if p["vessel"] == "left_main" else p["vessel"]
        voxels = chest.plaque_ids == p["id"]
        frac = chest.calcium_fraction[voxels]
        on_vessel = chest.labels.mask(label)[voxels]
        assert frac[on_vessel].sum() / frac.sum() > 0.5


def test_chest_given_plaque_truth():
    spec = PlaqueSpec("rca", 20.0, 4.0, 120.0, 90.0, 0.8, 500.0)
    ph = make_chest_phantom(seed=1, plaques=[spec], noise_sd_hu=0.0, supersample=8)
    r = 1.8
    expected = np.deg2rad(120.0) / 2 * ((r + 0.8) ** 2 - r ** 2) * 4.0
    t = ph.truth_for("rca")
    assert t.calcium_volume_mm3 == pytest.approx(expected)
    assert t.mass_mg == pytest.approx(0.5 * expected)
    assert t.calcium_volume_voxelised_mm3 == pytest.approx(expected, rel=0.02)
