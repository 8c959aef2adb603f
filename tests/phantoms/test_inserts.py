import numpy as np
import pytest

from vascalc.phantoms import make_insert_phantom


@pytest.fixture(scope="module")
def clean():
    # noise-free, thick overlapping slices (thickness 3 mm ≠ increment 1.5 mm), fine sampling
    return make_insert_phantom(shape=(20, 200, 200), spacing_mm=(1.5, 0.6, 0.6), slice_thickness_mm=3.0,
                               noise_sd_hu=0.0, supersample=32, rod_densities_mg_cm3=(0.0, 200.0))


def test_insert_truth_is_analytic(clean):
    for rec in clean.truth["inserts"]:
        r = rec["diameter_mm"] / 2
        assert rec["volume_mm3"] == pytest.approx(np.pi * r * r * rec["length_mm"])
        assert rec["mass_mg"] == pytest.approx(rec["density_mg_cm3"] * rec["volume_mm3"] / 1000.0)
        assert rec["hu"] == pytest.approx(rec["density_mg_cm3"])  # default model: 1 HU per mg/cm³ over water
    # 800 mg/cm³, 5 mm: 0.8 mg/mm³ · π·2.5²·5 mm³ = 78.54 mg
    big = next(r for r in clean.truth["inserts"] if r["name"] == "insert_800mg_5mm")
    assert big["mass_mg"] == pytest.approx(0.8 * np.pi * 6.25 * 5, rel=1e-9)


def test_voxelised_truth_within_one_percent_at_fine_supersampling(clean):
    for rec in clean.truth["inserts"]:
        # midpoint sampling errs by up to one sample step per end: ≤ 2 % for the 1 mm inserts
        tol = 0.01 if rec["diameter_mm"] >= 3 else 0.02
        assert rec["volume_voxelised_mm3"] == pytest.approx(rec["volume_mm3"], rel=tol), rec["name"]
    total = clean.calcium_fraction.sum(dtype=np.float64) * clean.volume.grid.voxel_volume_mm3
    assert total == pytest.approx(clean.truth["total"]["calcium_volume_mm3"], rel=0.01)


def test_blur_and_slice_profile_keep_the_hu_integral(clean):
    """Σ (HU − body) · voxel volume over a box around an insert = (HU_insert − body) · V (PSF, SSP, PV)."""
    hu = clean.volume.hu.astype(np.float64)
    grid = clean.volume.grid
    for rec in clean.truth["inserts"]:
        if rec["diameter_mm"] < 3:
            continue  # 1 mm inserts: integer HU rounding dominates their tiny integral
        centre = np.array(rec["centre_lps_mm"])
        k, j, i = np.rint(grid.lps_to_index(centre)).astype(int)
        box = hu[max(k - 6, 0):k + 7, j - 20:j + 21, i - 20:i + 21]
        integral = (box - 0.0).sum() * grid.voxel_volume_mm3
        assert integral == pytest.approx(rec["hu"] * rec["volume_mm3"], rel=0.02), rec["name"]


def test_rods_measure_their_true_hu():
    ph = make_insert_phantom(seed=4)
    for rod in ph.truth["rods"]:
        assert rod["hu_mean_measured"] == pytest.approx(rod["hu_true"], abs=3.0)
        assert rod["hu_sd_measured"] == pytest.approx(15.0, rel=0.2)


def test_insert_labels_and_reproducibility():
    a = make_insert_phantom(seed=1)
    b = make_insert_phantom(seed=1)
    c = make_insert_phantom(seed=2)
    assert np.array_equal(a.volume.hu, b.volume.hu) and a.truth == b.truth
    assert not np.array_equal(a.volume.hu, c.volume.hu)
    assert set(a.labels.present_names()) >= {"insert_200mg_5mm", "insert_800mg_3mm", "rod_200mg"}
