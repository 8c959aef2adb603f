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
    # the fixed layout: the RCA's lumen radius is 1.8 mm there (varied anatomy scales calibres ±15 %)
    ph = make_chest_phantom(seed=1, plaques=[spec], noise_sd_hu=0.0, supersample=8, vary_anatomy=False)
    r = 1.8
    expected = np.deg2rad(120.0) / 2 * ((r + 0.8) ** 2 - r ** 2) * 4.0
    t = ph.truth_for("rca")
    assert t.calcium_volume_mm3 == pytest.approx(expected)
    assert t.mass_mg == pytest.approx(0.5 * expected)
    assert t.calcium_volume_voxelised_mm3 == pytest.approx(expected, rel=0.02)


# ---------------------------------------------------------------- issue 8: variation, distractors, physics

import json  # noqa: E402
from pathlib import Path  # noqa: E402

from vascalc.errors import InputError  # noqa: E402
from vascalc.phantoms.chest import (CALCIUM_FREE_ARTERY_P, CALCIUM_FREE_HEART_P, CORONARY_ARTERIES,  # noqa: E402
                                    DISTRACTOR_KINDS, HEART_CENTRE, ChestAnatomy, Ellipsoid, _random_coronary_plaques,
                                    chest_vessels, line_blur, sample_anatomy)

SMALL = dict(shape=(32, 128, 128), spacing_mm=(5.0, 2.5, 2.5))
CORONARY_IDS = (2, 3, 4)


@pytest.fixture(scope="module")
def every_distractor():
    """Default grid, varied anatomy, every distractor kind asked for."""
    return make_chest_phantom(seed=3, distractors=list(DISTRACTOR_KINDS))


def test_same_seed_same_phantom_and_seeds_differ():
    a = make_chest_phantom(seed=5, **SMALL)
    b = make_chest_phantom(seed=5, **SMALL)
    c = make_chest_phantom(seed=6, **SMALL)
    assert np.array_equal(a.volume.hu, b.volume.hu) and np.array_equal(a.labels.labels, b.labels.labels)
    assert np.array_equal(a.distractor_ids, b.distractor_ids)
    assert json.dumps(a.truth, sort_keys=True) == json.dumps(b.truth, sort_keys=True)
    ta, tc = a.truth["anatomy"], c.truth["anatomy"]
    assert ta["heart_centre_mm"] != tc["heart_centre_mm"] and ta["heart_tilt_deg"] != tc["heart_tilt_deg"]
    assert not np.array_equal(a.labels.mask("heart"), c.labels.mask("heart"))


def test_anatomy_ranges_and_grooves_follow_the_heart():
    centres, tilts, scales, blends = [], [], [], []
    for seed in range(40):
        anat, t, shift = sample_anatomy(np.random.default_rng(seed))
        blends.append(t)
        assert abs(shift) <= 12.0
        if t < 1.0:  # the rare draw pulled towards the fixed layout to fit the chest
            continue
        centres.append(np.asarray(anat.heart_centre_mm) - HEART_CENTRE - np.array([0.0, shift, 0.0]))
        tilts.append(anat.heart_tilt_deg)
        scales.append(np.asarray(anat.heart_semi_axes_mm) / np.array([55.0, 45.0, 60.0]))
    assert np.mean(np.array(blends) == 1.0) > 0.9 and min(blends) >= 0.0
    centres, scales = np.abs(np.array(centres)), np.array(scales)
    assert centres[:, :2].max() <= 10.0 + 1e-9 and centres[:, 2].max() <= 6.0 + 1e-9 and centres[:, 0].max() > 5.0
    assert scales.min() >= 0.88 - 1e-9 and scales.max() <= 1.12 + 1e-9
    assert min(tilts) >= 5.0 - 1e-9 and max(tilts) <= 25.0 + 1e-9 and np.std(tilts) > 2.0
    # the map that carries the heart carries the coronaries: a groove point 4 mm outside the fixed heart
    # lies 4 mm outside the moved one, measured along the heart's own (rotated, scaled) frame
    anat = ChestAnatomy((20.0, -15.0, -85.0), (60.0, 42.0, 55.0), 12.0, 20.0)
    lad = np.asarray(next(v for v in chest_vessels(anat) if v.name == "lad").points)
    local = (lad[2] - np.asarray(anat.heart_centre_mm)) @ anat.rotation
    k = local[2] / 55.0
    ellipse_r = np.hypot(local[0] / 60.0, local[1] / 42.0)
    assert ellipse_r > np.sqrt(1 - k * k)  # outside the heart
    ax, ay = 60.0 * np.sqrt(1 - k * k), 42.0 * np.sqrt(1 - k * k)
    theta = np.arctan2(local[1] / (ay + 4.0), local[0] / (ax + 4.0))
    assert np.rad2deg(theta) % 360 == pytest.approx(296.0, abs=1e-6)


def test_fixed_layout_is_the_original_geometry():
    ph = make_chest_phantom(seed=2, vary_anatomy=False, distractors="none", **SMALL)
    v = ph.truth["vessels"]
    assert v["rca"]["centreline_lps_mm"][0] == pytest.approx([-6.0, -40.0, -46.0])
    assert v["left_main"]["centreline_lps_mm"][0] == pytest.approx([8.0, -40.0, -44.0])
    assert v["aorta"]["centreline_lps_mm"][0] == pytest.approx([0.0, -28.0, -56.0])
    assert v["rca"]["lumen_radius_mm"][0] == 1.8 and v["aorta"]["lumen_radius_mm"][0] == 14.0
    assert ph.truth["landmarks"]["heart_centre_lps_mm"] == [15.0, -20.0, -90.0]
    assert not any(n.startswith("rib_") for n in ph.labels.present_names())  # ribs follow vary_anatomy
    assert ph.truth["distractors"] == [] and not ph.distractor_ids.any()


def test_every_distractor_kind_is_there_with_exact_truth(every_distractor):
    ph = every_distractor
    ds = ph.truth["distractors"]
    assert {d["kind"] for d in ds} == set(DISTRACTOR_KINDS)
    assert [d["id"] for d in ds] == list(range(1, len(ds) + 1))
    assert set(np.unique(ph.distractor_ids)) == {0, *range(1, len(ds) + 1)}
    for d in ds:
        assert d["mass_mg"] == pytest.approx(d["density_mg_cm3"] * d["volume_mm3"] / 1000.0)
        assert 150.0 <= d["density_mg_cm3"] <= 900.0
        # exact partial volume (supersample 4): voxelised within 2 % of the analytic volume
        assert d["volume_voxelised_mm3"] == pytest.approx(d["volume_mm3"], rel=0.02), d["kind"]
        lo, hi = (np.asarray(b) for b in d["bbox_lps_mm"])
        assert np.all(lo <= np.asarray(d["centre_lps_mm"])) and np.all(np.asarray(d["centre_lps_mm"]) <= hi)
    # the analytic volumes themselves, by formula
    valve = next(d for d in ds if d["kind"] == "aortic_valve")["shape"]
    expected = valve["half_arc_rad"] * (valve["r1"] ** 2 - valve["r0"] ** 2) * (valve["s1"] - valve["s0"])
    assert next(d for d in ds if d["kind"] == "aortic_valve")["volume_mm3"] == pytest.approx(expected)
    node = next(d for d in ds if d["kind"] == "lymph_node")
    a, b, c = node["shape"]["semi_axes"]
    assert node["volume_mm3"] == pytest.approx(4 / 3 * np.pi * a * b * c)
    assert 3.0 <= 2 * min(a, b, c) and 2 * max(a, b, c) <= 8.0
    # the calcium fraction map carries the distractors' volume too
    grid = ph.volume.grid
    vox = ph.calcium_fraction[ph.distractor_ids > 0].sum(dtype=np.float64) * grid.voxel_volume_mm3
    assert vox == pytest.approx(sum(d["volume_voxelised_mm3"] for d in ds), rel=0.02)


def test_distractors_never_touch_coronaries_or_plaques(every_distractor):
    for ph in (every_distractor, *(make_chest_phantom(seed=s, plaque_rate=3.0, **SMALL) for s in (11, 12))):
        d = ph.distractor_ids > 0
        assert not np.isin(ph.labels.labels[d], CORONARY_IDS).any()
        assert not (d & (ph.plaque_ids > 0)).any()
    ph = every_distractor
    mitral = next(x for x in ph.truth["distractors"] if x["kind"] == "mitral_annulus")
    lcx = np.argwhere(ph.labels.mask("lcx"))
    mit = np.argwhere(ph.distractor_ids == mitral["id"])
    sp = np.asarray(ph.volume.grid.spacing_mm)
    gap = min(np.linalg.norm((lcx - m) * sp, axis=1).min() for m in mit)
    assert 2.0 <= gap <= 15.0  # near the LCX groove (the hard case), yet never on it


def test_where_distractors_lie(every_distractor):
    ph = every_distractor
    lab = ph.labels.labels
    by_kind = {d["kind"]: d for d in ph.truth["distractors"]}
    on = lambda kind: lab[ph.distractor_ids == by_kind[kind]["id"]]  # noqa: E731
    assert np.mean(on("aortic_valve") == 1) > 0.95          # inside the aorta label, at the root
    root_z = ph.truth["landmarks"]["aortic_root_lps_mm"][2]
    assert abs(by_kind["aortic_valve"]["centre_lps_mm"][2] - root_z) < 10.0
    assert np.mean(on("aortic_root_wall") == 1) > 0.5
    assert np.mean(on("descending_aorta") == 1) > 0.5
    assert np.mean(on("costal_cartilage") == 61) > 0.6      # in the costal cartilage
    assert np.mean(on("mitral_annulus") == 10) > 0.6        # in the heart's wall
    assert not np.isin(on("lymph_node"), (1, 10)).any()     # outside the heart and the aorta
    assert not np.isin(on("pericardium"), (1, 10)).any()    # outside the heart


def test_bones_are_labelled_with_totalsegmentator_names(every_distractor):
    ph = every_distractor
    names = set(json.loads((Path(__file__).resolve().parents[2] / "src" / "vascalc" / "anatomy"
                            / "totalseg_total_v2.json").read_text())["labels"].values())
    bones = {b["kind"]: b["labels"] for b in ph.truth["bones"]}
    assert set(bones) == {"spine", "ribs", "sternum", "costal_cartilage"}
    assert len(bones["ribs"]) >= 8 and bones["sternum"] == ["sternum"]
    for labels in bones.values():
        assert set(labels) <= names and set(labels) <= set(ph.labels.present_names())
    ribs = np.isin(ph.labels.labels, [ph.labels.ids_by_name[n] for n in bones["ribs"]])
    assert 500 < np.median(ph.volume.hu[ribs]) < 1300  # cortical shell, bright after blur


def test_presence_flags_and_zero_calcium_cohort():
    for seed in range(4):
        ph = make_chest_phantom(seed=seed, **SMALL)
        s = ph.truth["structures"]
        for a in CORONARY_ARTERIES:
            assert ph.truth["coronary_presence"][a] == (s[a]["n_lesions"] > 0) == (s[a]["mass_mg"] > 0)
            ids = set(s[a]["plaque_ids"])
            vessel_of = {p["id"]: p["vessel"] for p in ph.truth["plaques"]}
            assert all(vessel_of[i] in ((a, "left_main") if a == "lad" else (a,)) for i in ids)
    # the per-artery model over a cohort: ≈ 15 % clean hearts, ≈ 30 % clean arteries
    vessels = chest_vessels()
    free_hearts, free_arteries = 0, 0
    n = 400
    for seed in range(n):
        specs, model = _random_coronary_plaques(np.random.default_rng(seed), vessels, None)
        counts = {a: sum(sp.vessel in ((a, "left_main") if a == "lad" else (a,)) for sp in specs)
                  for a in CORONARY_ARTERIES}
        free_hearts += all(c == 0 for c in counts.values())
        free_arteries += sum(c == 0 for c in counts.values())
        assert set(model["calcium_free_arteries"]) == {a for a, c in counts.items() if c == 0}
    expected_arteries = CALCIUM_FREE_HEART_P + (1 - CALCIUM_FREE_HEART_P) * CALCIUM_FREE_ARTERY_P
    assert free_hearts / n == pytest.approx(CALCIUM_FREE_HEART_P, abs=0.05)
    assert free_arteries / (3 * n) == pytest.approx(expected_arteries, abs=0.05)


def test_line_blur_keeps_the_sum_and_spreads():
    img = np.zeros((3, 40, 40), np.float32)
    img[1, 20, 20] = 100.0
    out = line_blur(img, (2.0, 1.0, 1.0), 6.0, (1.0, 0.0))
    assert out.sum() == pytest.approx(100.0, rel=1e-5)
    assert out[1, 20, 17] > 0 and out[1, 20, 23] > 0 and out[1, 17, 20] == 0  # along x only
    assert out.max() < 25.0


def test_motion_blur_keeps_the_coronary_calcium_integral():
    specs = [PlaqueSpec("rca", 20.0, 4.0, 120.0, 90.0, 0.8, 600.0),
             PlaqueSpec("lad", 10.0, 5.0, 150.0, 0.0, 1.0, 800.0),
             PlaqueSpec("lcx", 8.0, 4.0, 140.0, 180.0, 0.9, 500.0)]
    kw = dict(shape=(40, 200, 200), spacing_mm=(2.5, 1.25, 1.25), noise_sd_hu=0.0, vary_anatomy=False, ribs=False,
              distractors="none")

    def calcium_image(blur):
        on = make_chest_phantom(seed=4, plaques=specs, motion_blur_mm=blur, **kw)
        off = make_chest_phantom(seed=4, plaques="none", motion_blur_mm=blur, **kw)
        return on, on.volume.hu.astype(np.float64) - off.volume.hu

    still, d0 = calcium_image(0.0)
    moved, d3 = calcium_image(3.0)
    assert moved.truth["motion"]["blur_mm"] == 3.0 and still.truth["motion"]["blur_mm"] == 0.0
    assert d3.sum() == pytest.approx(d0.sum(), rel=0.02)
    assert d3.max() < 0.85 * d0.max()  # the peak is smeared out
    # the truth is that of the unmoved calcium
    assert np.array_equal(moved.calcium_fraction, still.calcium_fraction)
    assert moved.truth["total"]["mass_mg"] == still.truth["total"]["mass_mg"]
    # and the integral is the calcium's: Σ (HU_calcium − HU_wall) × voxelised volume over the plaques
    assert d0.sum() * moved.volume.grid.voxel_volume_mm3 == pytest.approx(
        sum((p["hu"] - 45.0) * p["volume_voxelised_mm3"] for p in still.truth["plaques"]), rel=0.03)


def test_thick_slices_with_overlapping_increment():
    spec = [PlaqueSpec("lad", 10.0, 5.0, 150.0, 0.0, 1.0, 800.0)]
    kw = dict(shape=(40, 160, 160), spacing_mm=(2.5, 1.6, 1.6), noise_sd_hu=0.0, vary_anatomy=False, ribs=False,
              distractors="none", motion_blur_mm=None)
    thick = make_chest_phantom(seed=1, plaques=spec, slice_thickness_mm=5.0, **kw)
    thin = make_chest_phantom(seed=1, plaques=spec, **kw)
    assert thick.volume.info.slice_thickness_mm == 5.0 and thick.volume.info.slice_increment_mm == 2.5
    d_thick = thick.volume.hu.astype(np.float64) - make_chest_phantom(seed=1, plaques="none", slice_thickness_mm=5.0,
                                                                      **kw).volume.hu
    d_thin = thin.volume.hu.astype(np.float64) - make_chest_phantom(seed=1, plaques="none", **kw).volume.hu
    # the 5-mm profile sampled every 2.5 mm keeps the z integral of the calcium, and lowers its peak
    assert d_thick.sum() == pytest.approx(d_thin.sum(), rel=0.02)
    assert d_thick.max() < 0.8 * d_thin.max()


def test_field_of_view_cut_and_metal():
    full = make_chest_phantom(seed=8, distractors="none", **SMALL)
    cut = make_chest_phantom(seed=8, distractors="none", fov_cut_mm=40.0, **SMALL)
    assert full.truth["fov"]["heart_fraction_in_fov"] == pytest.approx(1.0, abs=0.02)
    frac = cut.truth["fov"]["heart_fraction_in_fov"]
    assert 0.4 < frac < 0.95
    # the label map agrees with the analytic fraction
    heart_voxels = lambda ph: np.count_nonzero(ph.labels.labels == 10)  # noqa: E731
    assert heart_voxels(cut) / heart_voxels(full) == pytest.approx(frac, abs=0.05)
    lead = make_chest_phantom(seed=8, distractors="none", metal="pacemaker_lead",
                              shape=(64, 256, 256), spacing_mm=(2.5, 1.25, 1.25), motion_blur_mm=None)
    metal = lead.labels.mask("metal_implant")
    assert metal.any() and lead.volume.hu[metal].max() >= 2000
    assert lead.truth["metal"]["kind"] == "pacemaker_lead"
    assert not (metal & np.isin(lead.labels.labels, CORONARY_IDS)).any()
    wires = make_chest_phantom(seed=8, distractors="none", metal="sternal_wires", motion_blur_mm=None,
                               shape=(64, 256, 256), spacing_mm=(2.5, 1.25, 1.25))
    wire = wires.labels.mask("metal_implant")
    assert wire.any() and not (wire & np.isin(wires.labels.labels, CORONARY_IDS)).any()
    sternum = wires.labels.mask("sternum")
    assert abs(np.argwhere(wire)[:, 1].mean() - np.argwhere(sternum)[:, 1].mean()) < 5  # around the sternum


def test_bad_options_are_refused():
    for kw in (dict(distractors="some"), dict(distractors=["aortic_valve", "gallstone"]), dict(metal="hip"),
               dict(fov_cut_mm=-1.0), dict(motion_blur_mm="sometimes"), dict(plaques="many"),
               dict(distractors=["costal_cartilage"], ribs=False)):
        with pytest.raises(InputError):
            make_chest_phantom(seed=0, **SMALL, **kw)


def test_ellipsoid_shape_volume_by_sampling():
    from vascalc.phantoms.geometry import render_fraction
    from vascalc.phantoms.core import make_grid
    e = Ellipsoid((0.3, -0.2, -10.0), (2.0, 3.0, 1.5))
    grid = make_grid((20, 40, 40), (1.0, 0.5, 0.5), z_top_mm=0.0)
    sl, frac, _, _ = render_fraction(e, grid, 8)
    assert frac.sum() * grid.voxel_volume_mm3 == pytest.approx(e.volume_mm3, rel=0.01)
