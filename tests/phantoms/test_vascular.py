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


# --- companion veins, psoas, fat planes, anatomical walls ---------------------------------------------

VEINS = ("inferior_vena_cava", "iliac_vena_left", "iliac_vena_right", "femoral_vein_left", "femoral_vein_right")


@pytest.fixture(scope="module")
def clean_pair():
    """Noise-free non-contrast and contrast phantoms at 2.5 × 1.5 × 1.5 mm (T12 to the hips)."""
    kw = dict(shape=(120, 256, 256), spacing_mm=(2.5, 1.5, 1.5), noise_sd_hu=0.0, plaques="none")
    return make_vascular_phantom(0, lumen_hu=40.0, **kw), make_vascular_phantom(0, lumen_hu=350.0, **kw)


def _centroid_xy_mm(ph, name, k):
    g = ph.volume.grid
    yy, xx = np.nonzero(ph.labels.mask(name)[k])
    return (g.origin_lps_mm[0] + g.spacing_mm[2] * xx.mean(), g.origin_lps_mm[1] + g.spacing_mm[1] * yy.mean())


def test_veins_are_labelled_with_their_hu(clean_pair):
    from scipy import ndimage

    plain, cta = clean_pair
    for ph, vein_hu in ((plain, 45.0), (cta, 40.0 + 0.35 * 310.0)):
        assert ph.truth["veins"]["inferior_vena_cava"]["hu"] == pytest.approx(vein_hu)
        for name in VEINS[:3]:
            core = ndimage.binary_erosion(ph.labels.mask(name), iterations=1)
            assert core.sum() > 50, name
            assert np.median(ph.volume.hu[core]) == pytest.approx(vein_hu, abs=3.0), name
    # CTA: the arteries are brighter than the veins (arterial phase); portal phase on request
    core = ndimage.binary_erosion(cta.labels.mask("aorta"), iterations=2)
    assert np.median(cta.volume.hu[core]) == pytest.approx(350.0, abs=5.0)
    late = make_vascular_phantom(0, lumen_hu=350.0, vein_hu=350.0, shape=(40, 96, 96), spacing_mm=(3.0, 3.0, 3.0),
                                 noise_sd_hu=0.0, plaques="none")
    assert late.truth["parameters"]["vein_hu"] == 350.0


def test_vein_anatomy_ivc_right_flat_and_iliac_veins_posterior_medial(clean_pair):
    ph, _ = clean_pair
    g = ph.volume.grid
    z_of = lambda zmm: int(round((zmm - g.origin_lps_mm[2]) / g.spacing_mm[0]))  # noqa: E731
    k = z_of(-100.0)
    ivc, aorta = ph.labels.mask("inferior_vena_cava")[k], ph.labels.mask("aorta")[k]
    assert _centroid_xy_mm(ph, "inferior_vena_cava", k)[0] < _centroid_xy_mm(ph, "aorta", k)[0] - 20.0
    # wider than deep (the aorta is round)
    width, depth = np.ptp(np.nonzero(ivc)[1]) + 1, np.ptp(np.nonzero(ivc)[0]) + 1
    assert width / depth > 1.3
    assert abs((np.ptp(np.nonzero(aorta)[1]) + 1) / (np.ptp(np.nonzero(aorta)[0]) + 1) - 1.0) < 0.15
    # the IVC ends at L5, below the aortic bifurcation (L4)
    zs_ivc = np.flatnonzero(ph.labels.mask("inferior_vena_cava").any(axis=(1, 2)))
    zs_aorta = np.flatnonzero(ph.labels.mask("aorta").any(axis=(1, 2)))
    assert zs_ivc.min() < zs_aorta.min()
    # in the pelvis each iliac vein lies posterior (+y) and medial to its artery
    for zmm in (-240.0, -260.0, -280.0):
        k = z_of(zmm)
        for side, sign in (("left", 1.0), ("right", -1.0)):
            vx, vy = _centroid_xy_mm(ph, f"iliac_vena_{side}", k)
            ax, ay = _centroid_xy_mm(ph, f"external_iliac_artery_{side}", k)
            assert vy > ay and sign * vx < sign * ax, (zmm, side)


def test_fat_planes_wrap_most_but_not_all_of_the_vessels(clean_pair):
    """The ring of voxels just outside the arteries (in soft tissue, not bone or another vessel) is
    fat in most places and missing in some: that is where the segmenter has no edge to follow."""
    from scipy import ndimage

    ph, _ = clean_pair
    lab = ph.labels
    vessels = np.isin(lab.labels, [i for i, n in lab.names.items() if "artery" in n or n == "aorta" or n in VEINS])
    arteries = np.isin(lab.labels, [i for i, n in lab.names.items() if "iliac_artery" in n])
    ring = ndimage.binary_dilation(arteries, iterations=1) & ~vessels & (lab.labels == 0)
    fat = ph.volume.hu[ring] < -40
    assert 0.5 < fat.mean() < 0.97


def test_walls_are_anatomical_and_plaques_lie_only_in_arteries(small_vascular):
    walls = {n: v["wall_mm"] for n, v in small_vascular.truth["vessels"].items()}
    assert walls["aorta"] == 2.0
    assert walls["common_iliac_artery_left"] == 1.5 and walls["external_iliac_artery_left"] == 1.2
    assert walls["femoral_artery_right"] == 1.2 and walls["renal_artery_left"] == 1.0
    assert all(p["thickness_mm"] <= walls[p["vessel"]] for p in small_vascular.truth["plaques"])
    veins = np.isin(small_vascular.labels.labels, [small_vascular.labels.ids_by_name[n] for n in VEINS
                                                   if n in small_vascular.labels.ids_by_name])
    assert veins.any()
    # the calcium lies in artery walls; only partial-volume edges of it fall in voxels labelled
    # vein where an artery touches its vein (measured 0.3 % of the calcium at 3.2-mm voxels)
    fraction = small_vascular.calcium_fraction
    assert fraction[veins].sum() < 0.01 * fraction.sum()
    assert {p["vessel"] for p in small_vascular.truth["plaques"]} <= set(small_vascular.truth["vessels"])
    assert set(small_vascular.truth["veins"]) == set(VEINS)


# --- the iliac/femoral label boundary at the top of the pubic symphysis (round 12) --------------------

def test_split_at_plane_cuts_the_crossing_piece_by_hand():
    """Femoral course (80, −50, −305) → (82, −45, −380) → (78, −25, −520): the plane z = −326 cuts the
    first piece at t = 21/75, i.e. (80.56, −48.6, −326), 0.28 × √5654 = 21.054 mm along it."""
    from vascalc.phantoms.core import Vessel
    from vascalc.phantoms.vascular import split_at_plane

    upper = Vessel("external_iliac_artery_left", ((45.0, 20.0, -222.0), (80.0, -50.0, -305.0)), (4.0,), 1.2)
    lower = Vessel("femoral_artery_left", ((80.0, -50.0, -305.0), (82.0, -45.0, -380.0), (78.0, -25.0, -520.0)),
                   (3.6, 3.5), 1.2, start_margin_mm=6.0)
    up, lo, s_cut = split_at_plane(upper, lower, -326.0)
    assert up.points[-1] == pytest.approx((80.56, -48.6, -326.0))
    assert lo.points[0] == up.points[-1] and lo.points[1:] == lower.points[1:]
    assert up.lumen_radius_mm == (4.0, 3.6) and lo.lumen_radius_mm == (3.6, 3.5)
    assert s_cut == pytest.approx(0.28 * np.sqrt(4 + 25 + 75 ** 2))
    # together the same course: lengths add up
    assert up.length_mm() + lo.length_mm() == pytest.approx(upper.length_mm() + lower.length_mm())
    with pytest.raises(GeometryError):
        split_at_plane(upper, lower, -300.0)  # above the femoral's start


@pytest.fixture(scope="module")
def groin():
    """Noise-free T12 to mid-thigh (z down to −400 mm) at 2.5 mm slices, 4-mm pixels."""
    return make_vascular_phantom(0, shape=(160, 60, 60), spacing_mm=(2.5, 4.0, 4.0), noise_sd_hu=0.0)


def test_iliac_becomes_femoral_at_the_top_of_the_pubic_symphysis(groin):
    """The boundary is computed from the painted pelvis: the superior pubic ramus' medial end lies at
    z_hip − 25 = −335 mm with radius 9 mm, so its top is −326 mm (16 mm below the femoral heads'
    centre, 21 mm below the old split at −305). Every external iliac voxel lies at or above that
    plane, every femoral voxel below it (2.5-mm slices: −323.75 and −326.25 mm)."""
    from vascalc.phantoms.geometry import axis_coords_mm

    b = groin.truth["iliac_femoral_boundary"]
    assert b["z_mm"] == -326.0 and "pubic symphysis" in b["rule"]
    assert groin.truth["landmarks"]["z_pubic_symphysis_top_mm"] == -326.0
    z = axis_coords_mm(groin.labels.grid)[0]
    for side in ("left", "right"):
        eia = z[groin.labels.mask(f"external_iliac_artery_{side}").any(axis=(1, 2))]
        fem = z[groin.labels.mask(f"femoral_artery_{side}").any(axis=(1, 2))]
        assert eia.min() == pytest.approx(-323.75) and fem.max() == pytest.approx(-326.25)
        # the labelled centrelines meet on the plane
        assert groin.truth["vessels"][f"external_iliac_artery_{side}"]["centreline_lps_mm"][-1][2] == -326.0
        assert groin.truth["vessels"][f"femoral_artery_{side}"]["centreline_lps_mm"][0][2] == -326.0
    # the plane is the top of the bone that is painted: the highest hip-bone voxel within 12 mm of
    # the midline (the symphysis) lies within two slices below it (a voxel is labelled when its centre
    # is inside, and the cap is only ≈ 4 mm wide 1 mm below its top)
    hip = groin.labels.mask("hip_left") | groin.labels.mask("hip_right")
    x = axis_coords_mm(groin.labels.grid)[2]
    midline = hip[:, :, np.abs(x) <= 12.0].any(axis=(1, 2))
    assert -326.0 - 5.0 <= z[midline].max() < -326.0


def test_plaques_are_named_by_the_label_they_lie_in(groin):
    """A plaque given along the lengthened external iliac (on its last piece, below the old split)
    lies in voxels labelled external iliac, above the plane; one at the femoral's start lies below it.
    Volumes are the hand formula with the piece's lumen radius (3.6 mm). Plaques that cross the
    plane are refused."""
    from vascalc.phantoms.geometry import axis_coords_mm

    eia = groin.truth["vessels"]["external_iliac_artery_left"]
    pieces = np.linalg.norm(np.diff(np.asarray(eia["centreline_lps_mm"]), axis=0), axis=1)
    old_end = float(pieces[:2].sum())
    specs = [PlaqueSpec("external_iliac_artery_left", old_end + 5.0, 8.0, 120.0, 90.0, 1.0, 600.0),
             PlaqueSpec("femoral_artery_left", 5.0, 8.0, 120.0, 90.0, 1.0, 600.0)]
    kw = dict(shape=(160, 60, 60), spacing_mm=(2.5, 4.0, 4.0), noise_sd_hu=0.0)
    ph = make_vascular_phantom(0, plaques=specs, **kw)
    z = axis_coords_mm(ph.labels.grid)[0]
    volume = np.pi / 3 * ((3.6 + 1.0) ** 2 - 3.6 ** 2) * 8.0  # arc 120° → half-arc π/3
    for pid, name, above in ((1, "external_iliac_artery_left", True), (2, "femoral_artery_left", False)):
        rec = ph.truth["plaques"][pid - 1]
        assert rec["vessel"] == name and rec["volume_mm3"] == pytest.approx(volume)
        assert ph.truth["structures"][name]["plaque_ids"] == [pid]
        assert (min(rec["z_range_mm"]) >= -326.0) if above else (max(rec["z_range_mm"]) < -326.0)
        where = ph.plaque_ids == pid
        assert (z[where.any(axis=(1, 2))] >= -326.0).all() == above
        arteries = [ph.labels.ids_by_name[n] for n in ("external_iliac_artery_left", "femoral_artery_left")]
        labels = ph.labels.labels[where & np.isin(ph.labels.labels, arteries)]
        assert labels.size and np.all(labels == ph.labels.ids_by_name[name])
    with pytest.raises(GeometryError, match="straight"):
        make_vascular_phantom(0, plaques=[PlaqueSpec("external_iliac_artery_left", float(pieces.sum()) - 3.0, 6.0,
                                                     90.0, 0.0, 1.0, 500.0)], **kw)


def test_random_plaques_near_the_plane_slide_clear_of_it():
    """A drawn plaque within 2 mm of the plane slides along its piece to the side of its centre
    (else the other side, else it is dropped); the others are untouched."""
    from vascalc.phantoms.core import Vessel
    from vascalc.phantoms.vascular import _clear_of_plane

    fem = Vessel("femoral_artery_left", ((0.0, 0.0, 0.0), (0.0, 0.0, -75.0), (0.0, 0.0, -150.0)), (3.6, 3.5), 1.2,
                 start_margin_mm=6.0)
    moves = {"femoral_artery_left": ("external_iliac_artery_left", 100.0, 21.0)}
    spec = lambda s, n=4.0: PlaqueSpec("femoral_artery_left", s, n, 90.0, 0.0, 1.0, 500.0)  # noqa: E731
    far = spec(40.0)
    out = _clear_of_plane([far, spec(20.0)], {fem.name: fem}, moves)  # centre 22, below the plane at 21
    assert out[0] == far and out[1].start_mm == pytest.approx(23.001)  # slid to 2 mm below it
    out = _clear_of_plane([far, spec(18.0)], {fem.name: fem}, moves)  # centre 20, above
    assert out[1].start_mm + 4.0 == pytest.approx(18.999)  # slid to end 2 mm above it
    # blocked below by the far plaque and too long to fit above the 6-mm start margin: dropped
    assert _clear_of_plane([spec(26.0), spec(19.0, 14.0)], {fem.name: fem}, moves) == [spec(26.0)]
