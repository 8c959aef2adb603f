import numpy as np
import pytest

from vascalc.errors import GeometryError, InputError, MaskError
from vascalc.phantoms import PlaqueSpec, make_vascular_phantom
from vascalc.phantoms.vascular import abdominal_vessels

CANONICAL = {"aorta", "common_iliac_artery_left", "external_iliac_artery_right", "renal_artery_left",
             "celiac_trunk", "superior_mesenteric_artery", "vertebrae_T12", "vertebrae_L1", "vertebrae_L5",
             "sacrum", "hip_left", "hip_right", "femur_left", "femur_right"}


def _aorta_spec(**kw):
    base = dict(vessel="aorta", start_mm=30.0, length_mm=12.0, arc_deg=90.0, angle_deg=180.0, thickness_mm=2.0,
                density_mg_cm3=600.0)
    base.update(kw)
    return PlaqueSpec(**base)


def test_same_seed_same_phantom_other_seed_differs(small_vascular):
    again = make_vascular_phantom(seed=0)
    assert np.array_equal(small_vascular.volume.hu, again.volume.hu)
    assert np.array_equal(small_vascular.labels.labels, again.labels.labels)
    assert np.array_equal(small_vascular.calcium_fraction, again.calcium_fraction)
    assert small_vascular.truth == again.truth
    other = make_vascular_phantom(seed=1)
    assert not np.array_equal(small_vascular.volume.hu, other.volume.hu)
    assert small_vascular.truth["plaques"] != other.truth["plaques"]


def test_canonical_names_and_totalseg_iliac(small_vascular):
    present = set(small_vascular.labels.present_names())
    assert CANONICAL <= present
    coarse = small_vascular.totalseg_labels()
    left = coarse.mask("iliac_artery_left")
    fine = small_vascular.labels
    assert np.array_equal(left, fine.mask("common_iliac_artery_left") | fine.mask("external_iliac_artery_left"))
    t = small_vascular.truth_for("iliac_artery_left")
    parts = [small_vascular.truth_for(n) for n in ("common_iliac_artery_left", "external_iliac_artery_left")]
    assert t.calcium_volume_mm3 == pytest.approx(sum(p.calcium_volume_mm3 for p in parts))
    assert t.n_lesions == sum(p.n_lesions for p in parts)
    with pytest.raises(MaskError):
        small_vascular.truth_for("pulmonary_artery")


def test_truth_sums_masses_and_voxelised_volumes(small_vascular):
    truth = small_vascular.truth
    plaques = truth["plaques"]
    assert len(plaques) == truth["total"]["n_lesions"] > 0
    for p in plaques:
        assert p["mass_mg"] == pytest.approx(p["density_mg_cm3"] * p["volume_mm3"] / 1000.0)
        assert p["volume_voxelised_mm3"] == pytest.approx(p["volume_mm3"], rel=0.03)
    for name, rec in truth["structures"].items():
        mine = [p for p in plaques if p["vessel"] == name]
        assert rec["n_lesions"] == len(mine)
        assert rec["calcium_volume_mm3"] == pytest.approx(sum(p["volume_mm3"] for p in mine))
    grid = small_vascular.volume.grid
    vox_total = small_vascular.calcium_fraction.sum(dtype=np.float64) * grid.voxel_volume_mm3
    assert vox_total == pytest.approx(truth["total"]["calcium_volume_voxelised_mm3"], rel=1e-4)
    # the plaque-id map marks exactly the voxels that hold calcium
    assert np.array_equal(small_vascular.plaque_ids > 0, small_vascular.calcium_fraction > 0)


def test_random_plaques_include_calcium_next_to_bone(small_vascular):
    near = [p for p in small_vascular.truth["plaques"] if p["next_to_bone"]]
    assert near, "the random phantom must hold a plaque within 3 mm of bone"
    spacing = small_vascular.volume.grid.spacing_mm
    assert all(p["distance_to_bone_mm"] <= 3.0 + 0.5 * np.hypot(spacing[1], spacing[2]) for p in near)
    assert any(p["vessel"] == "aorta" and 150 <= p["angle_deg"] <= 210 for p in near)  # posterior wall


def test_given_plaque_volume_and_hu_integral_are_exact():
    """Analytic truth (hand formula), voxelised truth within 1 %, and the image's HU integral."""
    spec = _aorta_spec()
    kw = dict(shape=(40, 96, 96), spacing_mm=(2.0, 1.0, 1.0), noise_sd_hu=0.0, supersample=8, slice_thickness_mm=3.0)
    with_plaque = make_vascular_phantom(seed=3, plaques=[spec], **kw)
    without = make_vascular_phantom(seed=3, plaques="none", **kw)
    r = with_plaque.truth["vessels"]["aorta"]["lumen_radius_mm"][0]
    volume = np.pi / 4 * ((r + 2.0) ** 2 - r ** 2) * 12.0  # arc 90° = π/2, half = π/4
    rec = with_plaque.truth["plaques"][0]
    assert rec["volume_mm3"] == pytest.approx(volume)
    assert rec["mass_mg"] == pytest.approx(0.6 * volume)
    assert rec["volume_voxelised_mm3"] == pytest.approx(volume, rel=0.01)
    diff = with_plaque.volume.hu.astype(np.float64) - without.volume.hu.astype(np.float64)
    integral = diff.sum() * with_plaque.volume.grid.voxel_volume_mm3
    wall_hu = with_plaque.truth["hu_model"]["wall_hu"]
    assert integral == pytest.approx((600.0 - wall_hu) * volume, rel=0.01)
    assert with_plaque.truth_for("aorta").n_lesions == 1


def test_bad_plaques_are_refused():
    kw = dict(shape=(20, 64, 64), spacing_mm=(3.0, 3.0, 3.0), noise_sd_hu=0.0)
    with pytest.raises(GeometryError, match="wall"):
        make_vascular_phantom(plaques=[_aorta_spec(thickness_mm=5.0)], **kw)
    with pytest.raises(GeometryError, match="straight"):
        aorta = next(v for v in abdominal_vessels() if v.name == "aorta")
        joint = float(aorta.segment_lengths()[0])
        make_vascular_phantom(plaques=[_aorta_spec(start_mm=joint - 3.0, length_mm=6.0)], **kw)
    with pytest.raises(GeometryError, match="field of view"):
        make_vascular_phantom(plaques=[PlaqueSpec("femoral_artery_left", 100.0, 5.0, 90.0, 0.0, 1.0, 500.0)], **kw)
    with pytest.raises(InputError):
        make_vascular_phantom(plaques=[_aorta_spec(vessel="carotid")], **kw)
    with pytest.raises(InputError):
        make_vascular_phantom(metal="hip", **kw)


def test_tissue_and_lumen_hu_look_like_ct():
    ph = make_vascular_phantom(seed=2, noise_sd_hu=0.0, lumen_hu=350.0, plaques="none")
    hu = ph.volume.hu
    lab = ph.labels
    from scipy import ndimage
    core = ndimage.binary_erosion(lab.mask("aorta"), iterations=2)
    assert np.median(hu[core]) == pytest.approx(350.0, abs=15.0)
    assert 150 < np.median(hu[lab.mask("vertebrae_L3")]) < 400  # trabecular body + posterior elements
    assert np.percentile(hu[lab.mask("vertebrae_L3")], 99) > 500  # cortical shell
    assert ph.truth["contrast"] is True


def test_metal_screw_and_stent():
    screw = make_vascular_phantom(seed=0, metal="screw")
    assert screw.labels.mask("metal_implant").sum() > 0
    assert 2500 < screw.volume.hu.max() <= 3071  # blurred metal, clipped to the 12-bit scanner range
    stent = make_vascular_phantom(seed=0, metal="stent")
    assert stent.truth["metal"]["kind"] == "stent"
    assert stent.volume.hu[stent.labels.mask("common_iliac_artery_left")].max() > 1000
