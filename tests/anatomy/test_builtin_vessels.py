"""Built-in vessel segmenter (anatomy.builtin.vessels) against phantom truth and TotalSegmentator masks.

The Dice bars are the values measured (docs/segmentation.md), rounded down by a few hundredths:
they catch regressions, they are not the issue's targets (aorta ≥ 0.85, iliac ≥ 0.75 on real
scans, ≥ 0.95 on phantoms), which are not all met. The phantom has had its veins, psoas and fat
planes since the artery/vein work: at the small test grid (3 × 3.2 × 3.2 mm) an external iliac
lumen on CTA is ≈ 2.5 pixels across and its fat plane darkens it further, so the iliac bars there
are lower than at the bench's 1.5-mm grid (0.93 there).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from scipy import ndimage

from vascalc.anatomy.builtin import vessels as vessels_mod
from vascalc.anatomy.builtin.vessels import (
    VEIN_NAMES,
    VESSEL_LABELS,
    VesselResult,
    _cap_near,
    _canonical_frame,
    _bifurcation_by_radius,
    _Ctx,
    _disc_mask,
    _fit_tube,
    _Fit,
    _N_RAYS,
    _iliac_guide,
    _robust_radius,
    _split,
    _Tracker,
    _UNIT,
    artery_in_front,
    artery_path_cost,
    calibre_held_fit,
    choose_aorta_track,
    contrast_lumen_mask,
    drop_stub_after_gap,
    enhanced_min_mm3,
    follow_large_mass,
    grow_into_wall_calcium,
    half_max_band_mm,
    band_tilt_yx,
    half_max_radii,
    iliac_cone_floor_mm,
    lateral_bone_front_px,
    needs_calibre_hold,
    oblique_wall_mm,
    path_calibre_mm,
    path_wall_support,
    pubic_symphysis_top,
    disc_tissue_fraction,
    pinned_tube_path,
    refit_short_iliac,
    reroute_weak_guided_fits,
    same_tube,
    split_start_radius_mm,
    seed_on_aortic_plane,
    segment_vessels,
    slice_minimal_path,
    split_at_aortic_calibre,
    track_tilt_yx,
    wall_plaque_mask,
)
from vascalc.errors import InputError
from vascalc.imaging import Grid, Volume, load_labelmap, load_volume
from vascalc.phantoms import make_vascular_phantom

BONE_PREFIXES = ("vertebrae_", "sacrum", "hip_", "femur_")


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(bool), b.astype(bool)
    total = a.sum() + b.sum()
    return 2.0 * float((a & b).sum()) / float(total) if total else 1.0


def _bone_truth(phantom) -> np.ndarray:
    ids = [i for i, n in phantom.labels.names.items() if n.startswith(BONE_PREFIXES)]
    return np.isin(phantom.labels.labels, ids)


@pytest.fixture(scope="module")
def cta_phantom():
    ph = make_vascular_phantom(5, lumen_hu=350)
    return ph, segment_vessels(ph.volume)


@pytest.fixture(scope="module")
def plain_phantom():
    ph = make_vascular_phantom(5, lumen_hu=40)
    return ph, segment_vessels(ph.volume)


# --- pure helpers --------------------------------------------------------------------------------

def test_robust_radius_ignores_rays_escaping_through_an_attachment():
    # 12 rays end on a 10-mm wall (±0.3 mm), 16 run on through an attached organ (scattered
    # 14–40 mm), 4 never end: the wall is the minority, but the only consistent group
    wall = 10.0 + 0.3 * np.sin(np.arange(12))
    r = np.concatenate([wall, np.linspace(14.0, 40.0, 16), [np.nan] * 4])
    assert _robust_radius(r) == pytest.approx(10.0, abs=0.3)
    # the median of all rays would have put the wall at 20+ mm
    assert np.nanmedian(np.where(np.isfinite(r), r, 1e6)) > 20.0


def test_canonical_frame_reads_flipped_and_permuted_grids():
    assert _canonical_frame(np.eye(3)) == ((0, 1, 2), (False, False, False))
    # RAS-stored NIfTI as SimpleITK reports it: x and y index axes run right and anterior
    perm, flips = _canonical_frame(np.diag([-1.0, -1.0, 1.0]))
    assert perm == (0, 1, 2) and flips == (False, True, True)
    # a sagittal-first array: index axes (z, y, x) hold (x, y, z) of the patient
    d = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    perm, flips = _canonical_frame(d)
    assert perm == (2, 1, 0) and flips == (False, False, False)


# --- phantoms ------------------------------------------------------------------------------------

def test_cta_phantom_aorta_and_iliacs(cta_phantom):
    ph, res = cta_phantom
    truth = ph.totalseg_labels()
    assert isinstance(res, VesselResult)
    assert set(res.labels.names.values()) == set(VESSEL_LABELS.values())
    assert res.contrast_detected
    assert 320.0 <= res.lumen_hu_median <= 380.0  # the phantom's lumen is 350 HU
    # measured 0.975 / 0.931 / 0.938 (seed 5, 100 × 128 × 128 at 3 × 3.2 × 3.2 mm; the iliacs were
    # 0.890 / 0.911 before the oblique wall of round 12, and 0.652 / 0.680 before the minimal-path
    # guide, which carries them down the whole pelvis)
    assert dice(res.labels.mask("aorta"), truth.mask("aorta")) >= 0.95
    assert dice(res.labels.mask("iliac_artery_left"), truth.mask("iliac_artery_left")) >= 0.90
    assert dice(res.labels.mask("iliac_artery_right"), truth.mask("iliac_artery_right")) >= 0.91


@pytest.mark.parametrize("seed, bar", [(0, 0.95), (3, 0.95), (7, 0.75)])
def test_cta_phantom_aorta_other_seeds(seed, bar):
    ph = make_vascular_phantom(seed, lumen_hu=350)
    res = segment_vessels(ph.volume)
    # measured 0.972 (seed 0), 0.973 (seed 3), 0.777 (seed 7: a 21-mm, 734-HU plaque anchors the
    # CTA skeleton, which takes in the lumen beside it for 4 slices — see the report)
    assert dice(res.labels.mask("aorta"), ph.totalseg_labels().mask("aorta")) >= bar
    assert not (res.labels.labels > 0)[_bone_truth(ph)].any()


def test_non_contrast_phantom_aorta(plain_phantom):
    ph, res = plain_phantom
    truth = ph.totalseg_labels()
    assert not res.contrast_detected
    assert 20.0 <= res.lumen_hu_median <= 70.0  # blood 40 HU, wall 45 HU
    # measured 0.959 (seed 5; 0.924 before the phantom's anatomical 2-mm aortic wall); earlier
    # other seeds: 0.654 (0), 0.555 (3; 0.350 before the swerve test
    # below), 0.842 (7) — see the report
    assert dice(res.labels.mask("aorta"), truth.mask("aorta")) >= 0.93
    # iliacs: measured 0.905 / 0.895 with the half-maximum outline (0.867 / 0.856 without; 0.534 /
    # 0.564 without the minimal-path guide: the greedy tracker slid into the veins)
    assert dice(res.labels.mask("iliac_artery_left"), truth.mask("iliac_artery_left")) >= 0.87
    assert dice(res.labels.mask("iliac_artery_right"), truth.mask("iliac_artery_right")) >= 0.86
    # the visceral origins are not looked for without contrast: known, absent
    for name in ("renal_artery_left", "renal_artery_right", "celiac_trunk", "superior_mesenteric_artery"):
        assert name in res.labels.absent_names()


def test_non_contrast_bifurcation_found_where_the_track_swerves_into_an_iliac():
    """Seed 0 at the bench's grid: the right common iliac touches soft tissue with no fat plane,
    so the tube keeps an aortic calibre and the narrowing test never fires; the track used to
    run 16 slices (40 mm) down the iliac as "aorta" (Dice 0.811, 1.33 × the true volume)."""
    ph = make_vascular_phantom(0, lumen_hu=40, shape=(120, 256, 256), spacing_mm=(2.5, 1.5, 1.5))
    truth = ph.totalseg_labels().mask("aorta")
    res = segment_vessels(ph.volume)
    aorta = res.labels.mask("aorta")
    lowest_truth = int(np.flatnonzero(truth.any(axis=(1, 2))).min())
    lowest = int(np.flatnonzero(aorta.any(axis=(1, 2))).min())
    assert lowest >= lowest_truth - 1  # it stops at the bifurcation
    assert dice(aorta, truth) >= 0.94  # measured 0.969 (0.896 with the phantom's former 3-mm wall)
    # the right common iliac crosses the IVC confluence: measured 0.656 with the minimal-path guide
    # (0.509 greedy), the left 0.916
    iliacs = ph.totalseg_labels()
    assert dice(res.labels.mask("iliac_artery_right"), iliacs.mask("iliac_artery_right")) >= 0.62
    assert dice(res.labels.mask("iliac_artery_left"), iliacs.mask("iliac_artery_left")) >= 0.89
    assert any("aortic bifurcation at slice" in n for n in res.notes)


@pytest.mark.parametrize("which", ["cta", "plain"])
def test_no_bone_voxel_in_any_vessel_mask(which, cta_phantom, plain_phantom):
    ph, res = cta_phantom if which == "cta" else plain_phantom
    vessel = res.labels.labels > 0
    assert vessel.sum() > 1000
    assert not vessel[_bone_truth(ph)].any()


def test_posterior_plaques_next_to_the_spine_mostly_stay_in_the_aorta(cta_phantom):
    """The posterior aortic plaques 2–5 mm from the vertebral bodies (the aorta-to-patella
    study's failure mode). At 3.2-mm voxels the threshold skeleton fuses with part of such a
    plaque and bone wins: measured 0.78 of the plaque's voxels kept (seed 5; 0.14–0.84 over
    seeds 0, 3, 5 — see the report)."""
    ph, res = cta_phantom
    aorta = res.labels.mask("aorta")
    near = [p for p in ph.truth["plaques"] if p["vessel"] == "aorta" and p["next_to_bone"]]
    assert near, "the phantom always places plaques next to bone"
    kept = [aorta[ph.plaque_ids == p["id"]].mean() for p in near]
    assert min(kept) >= 0.7


def test_metal_streak_slices_are_uncertain_and_left_empty():
    """A pedicle screw at L4 (3071 HU) streaks the slices of the aortic bifurcation: the
    segmenter marks them uncertain for the vessels within reach and draws nothing there."""
    ph = make_vascular_phantom(5, lumen_hu=350, metal="screw")
    res = segment_vessels(ph.volume)
    metal = ph.volume.hu > 2000
    metal_z = set(np.flatnonzero(metal.any(axis=(1, 2))).tolist())
    assert metal_z
    unc = res.uncertain_slices.get("aorta", ())
    assert metal_z <= set(unc)  # every slice holding metal is uncertain for the aorta
    aorta = res.labels.mask("aorta")
    for name, slices in res.uncertain_slices.items():
        m = res.labels.mask(name)
        assert not any(m[z].any() for z in slices)
    assert res.labels.uncertain_slices == res.uncertain_slices
    assert not (res.labels.labels > 0)[metal].any()
    # the aorta above the streaks is still found (measured 0.950; 0.919 with the old 15-mm reach)
    assert dice(aorta, ph.totalseg_labels().mask("aorta")) >= 0.93


def test_metal_reach_is_the_metal_slices_and_one_more():
    """Streaks lie in the slices that hold metal (and one slice further, the slice profile), within
    40 mm in-plane: metal voxels on slices 10–11 (2.5 mm) at (y, x) = (50, 50) mm."""
    hu = np.zeros((30, 60, 60), np.float32)
    hu[10:12, 25, 25] = 3000.0  # pixel 25 × 2 mm = 50 mm
    metal = vessels_mod._Metal.find(hu, (2.5, 2.0, 2.0), np.zeros(2))
    centre = np.array([50.0, 80.0])  # 30 mm from the metal in-plane
    assert [z for z in range(30) if metal.near(z, centre)] == [9, 10, 11, 12]
    assert not metal.near(10, np.array([50.0, 91.0]))  # 41 mm away in-plane
    assert vessels_mod._Metal.find(np.zeros((3, 4, 4)), (2.5, 2.0, 2.0), np.zeros(2)) is None


@pytest.mark.parametrize("seed, aorta_bar, right_bar", [(0, 0.90, 0.83), (1, 0.87, 0.62)])
def test_non_contrast_screw_only_the_streaked_slices_are_uncertain(seed, aorta_bar, right_bar):
    """A pedicle screw at L4 without contrast: only the slices holding metal and one more either
    side are uncertain (they were 12 slices, 36 mm, with the old fixed 15-mm reach), the aorta is
    drawn down to them and the iliacs are followed below. Measured at this grid (3 × 3.2 × 3.2 mm):
    seed 0 aorta 0.852 → 0.913, right iliac 0.810 → 0.860; seed 1 aorta 0.854 → 0.896 (0.025
    without the midline test: a track seeded on the IVC swerved onto the aorta's lower end), right
    iliac 0.113 → 0.681 with the iliac cone (the path had jumped back to a small tube at the seed's
    x, 27–44 mm medial of the buried artery). Round 13 (the aorta held to its calibre): seed 1 aorta
    0.903, its top slice (99, far from the screw) left empty and uncertain where the held fit found
    too little wall."""
    ph = make_vascular_phantom(seed, lumen_hu=40.0, metal="screw")
    truth = ph.totalseg_labels()
    res = segment_vessels(ph.volume)
    metal_z = np.flatnonzero((ph.volume.hu > 2000).any(axis=(1, 2)))
    expected = list(range(int(metal_z.min()) - 1, int(metal_z.max()) + 2))
    near_metal = [z for z in res.uncertain_slices["aorta"] if metal_z.min() - 10 <= z <= metal_z.max() + 10]
    assert near_metal == expected
    assert set(res.uncertain_slices["aorta"]) - set(expected) <= {99}
    assert dice(res.labels.mask("aorta"), truth.mask("aorta")) >= aorta_bar
    if right_bar is not None:
        assert dice(res.labels.mask("iliac_artery_right"), truth.mask("iliac_artery_right")) >= right_bar
    assert not (res.labels.labels > 0)[ph.volume.hu > 2000].any()


@pytest.mark.parametrize("seed", [5])
def test_iliacs_are_reacquired_below_a_screw(seed):
    """The screw's streaks hide the aortic bifurcation: the iliacs are picked up again as two
    tubes on the first clear slices below, and the streaked gap is uncertain for them too."""
    ph = make_vascular_phantom(seed, lumen_hu=350, metal="screw")
    truth = ph.totalseg_labels()
    res = segment_vessels(ph.volume)
    # measured 0.933 / 0.935 (seed 5; 0.902 / 0.906 before the oblique wall of round 12, 0.858 / 0.850
    # with the old 15-mm streak reach, 0.0 before re-acquisition)
    for name in ("iliac_artery_left", "iliac_artery_right"):
        assert dice(res.labels.mask(name), truth.mask(name)) >= 0.90
        gap = set(res.uncertain_slices.get(name, ()))
        assert gap, "the slices between the last aortic fit and the re-acquired iliacs are uncertain"
        assert not any(res.labels.mask(name)[z].any() for z in gap)
    assert not (res.labels.labels > 0)[ph.volume.hu > 2000].any()


def test_same_result_on_a_flipped_grid(cta_phantom):
    """Reading the array in the canonical frame makes the result independent of storage order."""
    ph, res = cta_phantom
    g = ph.volume.grid
    # store the x axis reversed: the first column is now the patient's leftmost one
    nx = g.shape[2]
    origin = np.asarray(g.origin_lps_mm) + np.array([(nx - 1) * g.spacing_mm[2], 0.0, 0.0])
    flipped = Volume(np.ascontiguousarray(ph.volume.hu[:, :, ::-1]),
                     Grid(g.shape, g.spacing_mm, tuple(origin), (-1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)), ph.volume.info)
    res2 = segment_vessels(flipped)
    assert np.array_equal(res2.labels.labels[:, :, ::-1], res.labels.labels)


def test_deterministic(plain_phantom):
    ph, res = plain_phantom
    again = segment_vessels(ph.volume)
    assert np.array_equal(again.labels.labels, res.labels.labels)
    assert again.uncertain_slices == res.uncertain_slices


def test_given_bone_mask_is_never_overlapped(plain_phantom):
    ph, _ = plain_phantom
    bones = _bone_truth(ph)
    res = segment_vessels(ph.volume, bones=bones)
    assert not (res.labels.labels > 0)[bones].any()


def test_wrong_mask_shape_is_an_input_error(plain_phantom):
    ph, _ = plain_phantom
    with pytest.raises(InputError, match="bones mask shape"):
        segment_vessels(ph.volume, bones=np.zeros((3, 3, 3), bool))


def test_disc_mask_areas_match_the_shapes():
    spacing = (0.5, 0.5)
    disc = _disc_mask((100, 100), spacing, [(np.array([25.0, 25.0]), 10.0)])
    assert disc.sum() * 0.25 == pytest.approx(np.pi * 100.0, rel=0.02)
    # a fit's star-shaped outline: an ellipse-like star 12 × 6 mm (radii by ray angle)
    ang = np.linspace(0.0, 2.0 * np.pi, _N_RAYS, endpoint=False)
    radii = 1.0 / np.sqrt((np.cos(ang) / 12.0) ** 2 + (np.sin(ang) / 6.0) ** 2)
    star = _disc_mask((100, 100), spacing, [_Fit(np.array([25.0, 25.0]), radii, 9.0, 1.0, 40.0)])
    assert star.sum() * 0.25 == pytest.approx(np.pi * 12.0 * 6.0, rel=0.05)
    assert not (star & ~_disc_mask((100, 100), spacing, [(np.array([25.0, 25.0]), 12.01)])).any()


def test_capped_artery_stays_on_its_course_beside_a_muscle():
    """An artery (r = 5 mm) lying against a large muscle with no fat plane between them: the merged
    blob fits as one big tube; capped at 5 mm, the disc goes where it is most inside near the
    predicted centre — the artery — not into the muscle's middle (whichever side the muscle is)."""
    img = np.full((1, 80, 80), -100.0, np.float32)
    yy, xx = np.mgrid[0:80, 0:80] * 1.0
    artery = np.hypot(yy - 40, xx - 30) <= 5.0
    muscle = np.hypot(yy - 40, xx - 50) <= 16.0  # touches the artery on its left side
    img[0][artery | muscle] = 50.0
    ctx = _Ctx(img, np.zeros(img.shape, bool), np.array([2.5, 1.0, 1.0]), False, -15.0)
    merged = _Fit(np.array([40.0, 44.0]), np.full(_N_RAYS, 20.0), 20.0, 1.0, 50.0)
    for side in (1, -1):
        pred = np.array([40.0, 30.0 + side * 1.0])
        capped = _cap_near(ctx, 0, merged, 5.0, pred)
        assert capped.radius_mm == 5.0
        assert np.hypot(*(capped.centre_mm - np.array([40.0, 30.0]))) <= 1.5
    # a fit within the cap is returned as it is
    small = _Fit(np.array([40.0, 30.0]), np.full(_N_RAYS, 4.0), 4.0, 1.0, 50.0)
    assert _cap_near(ctx, 0, small, 5.0, np.array([40.0, 30.0])) is small


def test_slice_minimal_path_follows_the_cheap_channel_and_skips_unreachable_decoys():
    """A zero-cost channel zig-zags by one pixel per slice through unit cost; on two slices a
    zero-cost decoy sits 10 pixels away (out of reach in one step) and on one slice the channel
    itself is missing (cost 1 there, as everywhere): the global path stays on the channel."""
    n, ny, nx = 12, 30, 30
    cost = np.ones((n, ny, nx))
    truth = np.array([(10 + (k % 3), 12 + k) for k in range(n)])
    for k, (y, x) in enumerate(truth):
        if k != 6:
            cost[k, y, x] = 0.0
    cost[4, 25, 5] = cost[5, 25, 5] = 0.0
    path = slice_minimal_path(cost, (1.0, 1.0), tuple(truth[0]), max_step_mm=2.5, smooth_weight=0.1)
    assert path.shape == (n, 2)
    keep = np.arange(n) != 6
    np.testing.assert_array_equal(path[keep], truth[keep])
    # where the channel is missing the path bridges it smoothly (between y 12 and 11)
    assert np.abs(path[6] - truth[6]).max() <= 1
    # the step limit is hard: with steps ≤ 1 mm a 2-pixel diagonal move is impossible
    far = np.ones((3, 9, 9))
    far[2, 4, 6] = -5.0
    p = slice_minimal_path(far, (1.0, 1.0), (4, 4), max_step_mm=1.0)
    assert np.all(np.abs(np.diff(p, axis=0)).sum(axis=1) <= 1)
    # hand count: staying put costs 1 + 1 + 1 = 3; walking to the cheap pixel two columns away,
    # one column per slice, costs 1 + 1 − 5 + 2 × 1 (penalties) = −1, so that is the answer
    assert tuple(p[-1]) == (4, 6)
    np.testing.assert_array_equal(p, [(4, 4), (4, 5), (4, 6)])


def test_artery_cost_prefers_the_tube_with_fat_in_front_of_it():
    """An artery (r = 5 mm) lying against the front of its larger vein (r = 7 mm, no fat plane) and
    a big muscle beside them: the cost is lowest at the artery's centre, not at the vein's centre
    nor on the muscle's front edge (y grows posterior)."""
    sp = (1.0, 1.0)
    yy, xx = np.mgrid[0:80, 0:100] * 1.0
    artery = np.hypot(yy - 30, xx - 40) <= 5.0
    vein = np.hypot(yy - 42, xx - 40) <= 7.0          # directly behind, touching
    muscle = (np.abs(xx - 75) <= 15) & (np.abs(yy - 45) <= 20)
    inside = (artery | vein | muscle)[None]
    cost = artery_path_cost(inside, sp)[0]
    # measured 0.08 (artery), 0.43 (vein), 0.49 (muscle edge), 1.0 (muscle), 2.0 (fat)
    assert cost[30, 40] < 0.15
    assert cost[30, 40] < cost[42, 40] - 0.3
    assert cost[30, 40] < cost[27, 75] - 0.3   # just inside the muscle's front edge
    assert cost[30, 40] < cost[45, 75] - 0.3   # the muscle's middle
    assert cost[5, 5] >= 1.0                   # fat costs more than any tissue


def test_iliac_guide_keeps_the_artery_where_it_crosses_in_front_of_a_vein():
    """3-D: an artery (r = 5 mm) runs down and laterally; a vein (r = 7 mm) runs straight down and
    for 8 slices lies right behind the artery with no fat plane (the crossing of the right common
    iliac artery over the venous confluence). The minimal path stays within 1.5 mm of the artery's
    centre on every slice; a greedy tube fit alone would be free to slide into the vein."""
    nz, ny, nx = 30, 90, 90
    sp = np.array([3.0, 1.5, 1.5])
    img = np.full((nz, ny, nx), -100.0, np.float32)
    yy, xx = np.mgrid[0:ny, 0:nx] * 1.5
    centres = {}
    for z in range(nz):
        k = nz - 1 - z                       # slices below the seed
        a = np.array([50.0, 45.0 + 1.2 * k])  # moves 1.2 mm left per slice
        v = np.array([a[0] + 12.0, 45.0 + 1.2 * 11])  # straight down, crossed at k ≈ 11
        img[z][np.hypot(yy - v[0], xx - v[1]) <= 7.0] = 45.0
        img[z][np.hypot(yy - a[0], xx - a[1]) <= 5.0] = 40.0
        centres[z] = a
    ctx = _Ctx(img, np.zeros(img.shape, bool), sp, False, -15.0)
    guide = _iliac_guide(ctx, nz - 1, centres[nz - 1], 0, "left")
    assert sorted(guide) == list(range(0, nz))
    err = [np.hypot(*(guide[z] - centres[z])) for z in range(nz)]
    assert max(err) <= 1.5


def test_guided_tracker_draws_nothing_where_no_tube_is_seen_and_goes_on_below():
    """A straight artery (r = 5 mm) in fat, buried for 6 slices (18 mm) in a muscle block with no
    fat edge: along a guide the tracker fits the tube above and below the block, leaves the buried
    slices empty and reports them uncertain (a gap longer than ``max_gap_mm`` is not bridged)."""
    nz = 30
    sp = np.array([3.0, 1.5, 1.5])
    img = np.full((nz, 60, 60), -100.0, np.float32)
    yy, xx = np.mgrid[0:60, 0:60] * 1.5
    centre = np.array([45.0, 45.0])
    img[:, np.hypot(yy - centre[0], xx - centre[1]) <= 5.0] = 40.0
    img[10:16, 10:50, 10:50] = 45.0                     # the muscle block, ≥ 15 mm around the artery
    ctx = _Ctx(img, np.zeros(img.shape, bool), sp, False, -15.0)
    seed = _Fit(centre.copy(), np.full(_N_RAYS, 5.0), 5.0, 1.0, 40.0)
    guide = {z: centre.copy() for z in range(nz - 1)}
    t = _Tracker(ctx, nz - 1, seed, -1, r_range_mm=(2.0, 14.0), max_shift_mm=5.0, max_gap_mm=6.0,
                 min_hits=0.3, r_cap_mm=7.5, guide=guide)
    while t.active():
        t.step()
    fits, uncertain, _ = t.result()
    assert sorted(fits) == [*range(0, 10), *range(16, nz - 1)]
    assert sorted(uncertain) == list(range(10, 16))
    for z in fits:
        assert np.hypot(*(fits[z].centre_mm - centre)) <= 0.75
        assert fits[z].radius_mm == pytest.approx(5.0, abs=0.75)


def _buried_tube_ctx(drift_mm_per_slice: float = 0.0) -> tuple[_Ctx, np.ndarray]:
    """2.5-mm slices: an artery (r = 4.5 mm) in fat along z, buried in a muscle block with no fat
    edge on slices 15–24 (25 mm); above the block (slices ≥ 25) it drifts by
    ``drift_mm_per_slice`` in x, below it it runs straight on from where it left the block."""
    nz = 40
    img = np.full((nz, 60, 60), -100.0, np.float32)
    yy, xx = np.mgrid[0:60, 0:60] * 1.5
    centres = np.zeros((nz, 2))
    for z in range(nz):
        centres[z] = (45.0, 45.0 + drift_mm_per_slice * max(z - 25, 0))
        img[z][np.hypot(yy - centres[z][0], xx - centres[z][1]) <= 4.5] = 40.0
    img[15:25, 5:55, 5:55] = 45.0
    return _Ctx(img, np.zeros(img.shape, bool), np.array([2.5, 1.5, 1.5]), False, -15.0), centres


@pytest.mark.parametrize("drift", [0.0, 0.8])
def test_greedy_artery_track_crosses_a_long_buried_stretch_on_a_held_prediction(drift):
    """Off the guide, 25 mm with no tube seen used to end the track (``max_gap_mm`` 12). With
    a 50-mm gap and 12 mm of coasting the track picks the artery up again below the block and
    leaves the buried slices empty and uncertain. Where the artery drifted sideways above the
    block (0.8 mm per slice), the velocity is extrapolated over 12 mm only: carried over all
    10 slices the prediction would land 8 mm off, outside the re-acquisition search."""
    ctx, centres = _buried_tube_ctx(drift)
    z0 = ctx.img.shape[0] - 1
    seed = _Fit(centres[z0].copy(), np.full(_N_RAYS, 4.5), 4.5, 1.0, 40.0)
    kw = dict(r_range_mm=(2.0, 14.0), max_shift_mm=6.5, min_hits=0.3, r_cap_mm=6.0)
    short, _, _ = vessels_mod._track(ctx, z0, seed, -1, max_gap_mm=12.0, **kw)
    assert min(short) == 25
    fits, uncertain, _ = vessels_mod._track(ctx, z0, seed, -1, max_gap_mm=50.0, coast_mm=12.0, **kw)
    assert sorted(fits) == [*range(0, 15), *range(25, z0)]
    assert sorted(uncertain) == list(range(15, 25))
    for z in range(0, 15):
        assert np.hypot(*(fits[z].centre_mm - centres[z])) <= 0.75


def _turning_buried_tube_ctx(drift_mm_per_slice: float) -> tuple[_Ctx, np.ndarray]:
    """Like :func:`_buried_tube_ctx`, but the artery keeps its sideways course (x grows by
    ``drift_mm_per_slice`` per slice downwards) above, through and below the muscle block on
    slices 15–24: a femoral turning back towards the popliteal."""
    nz = 40
    img = np.full((nz, 60, 90), -100.0, np.float32)
    yy, xx = np.mgrid[0:60, 0:90] * 1.5
    centres = np.zeros((nz, 2))
    for z in range(nz):
        centres[z] = (45.0, 20.0 + drift_mm_per_slice * (nz - 1 - z))
        img[z][np.hypot(yy - centres[z][0], xx - centres[z][1]) <= 4.5] = 40.0
    img[15:25, 5:55, 5:85] = 45.0
    return _Ctx(img, np.zeros(img.shape, bool), np.array([2.5, 1.5, 1.5]), False, -15.0), centres


@pytest.mark.parametrize("on_course", [True, False])
def test_greedy_artery_track_finds_a_buried_artery_again_on_its_course(monkeypatch, on_course):
    """Round 10 (bench knee-length non-contrast seed 0 left femoral, 0.658, HD95 155 mm): a buried
    artery that keeps turning (2 mm per slice here) lies 12 mm off the held prediction after the
    10-slice block (4 slices of velocity, then held), outside the 6.5-mm search: the track ends
    there. Looked for again on its course (the velocity over the whole gap) it is picked up on the
    first slice below the block and followed to the end, on its centre; the block stays empty."""
    monkeypatch.setattr(vessels_mod, "COAST_ON_COURSE", on_course)
    _assert_track_across_the_block(*_turning_buried_tube_ctx(2.0), picked_up=on_course)


def _assert_track_across_the_block(ctx, centres, *, picked_up: bool) -> None:
    """Track a buried-tube case (block on slices 15-24) down from its top slice: on the tube's centre
    (≤ 0.75 mm) above the block, and either ending at the block or picked up below it on every slice
    with the block empty and uncertain."""
    z0 = ctx.img.shape[0] - 1
    seed = _Fit(centres[z0].copy(), np.full(_N_RAYS, 4.5), 4.5, 1.0, 40.0)
    kw = dict(r_range_mm=(2.0, 14.0), max_shift_mm=6.5, min_hits=0.3, r_cap_mm=6.0)
    fits, uncertain, _ = vessels_mod._track(ctx, z0, seed, -1, max_gap_mm=50.0, coast_mm=12.0, **kw)
    for z in range(25, z0):
        assert np.hypot(*(fits[z].centre_mm - centres[z])) <= 0.75
    if not picked_up:
        assert min(fits) == 25
        return
    assert sorted(fits) == [*range(0, 15), *range(25, z0)]
    assert sorted(uncertain) == list(range(15, 25))
    for z in range(0, 15):
        assert np.hypot(*(fits[z].centre_mm - centres[z])) <= 0.75


@pytest.mark.parametrize("stray_slices", [1, 3])
def test_a_guess_on_the_course_must_be_a_tube_that_goes_on(stray_slices):
    """The artery of :func:`_turning_buried_tube_ctx` ends in the block; below it a stray tube of the
    same calibre lies exactly on the course for ``stray_slices`` slices (14 down). Picked up on the
    course only when the next slice shows it again near it: one slice is never drawn (the track
    ends at 25), three are (slices 14-12; the block stays uncertain and empty)."""
    ctx, centres = _turning_buried_tube_ctx(2.0)
    img = ctx.img
    img[:15] = -100.0
    yy, xx = np.mgrid[0:60, 0:90] * 1.5
    for z in range(14, 14 - stray_slices, -1):
        img[z][np.hypot(yy - centres[z][0], xx - centres[z][1]) <= 4.5] = 40.0
    z0 = img.shape[0] - 1
    seed = _Fit(centres[z0].copy(), np.full(_N_RAYS, 4.5), 4.5, 1.0, 40.0)
    kw = dict(r_range_mm=(2.0, 14.0), max_shift_mm=6.5, min_hits=0.3, r_cap_mm=6.0)
    fits, uncertain, _ = vessels_mod._track(ctx, z0, seed, -1, max_gap_mm=50.0, coast_mm=12.0, **kw)
    if stray_slices == 1:
        assert min(fits) == 25
    else:
        assert sorted(fits) == [12, 13, 14, *range(25, z0)]
        # the block, and the slices below the stray tube (the scan ends within the gap allowance)
        assert sorted(uncertain) == [*range(0, 12), *range(15, 25)]


def test_ivc_is_found_beside_the_aorta_and_never_overlaps_an_artery(plain_phantom):
    ph, res = plain_phantom
    truth = ph.totalseg_labels()
    assert set(VEIN_NAMES) <= set(res.labels.names.values())
    ivc = res.labels.mask("inferior_vena_cava")
    # measured 0.821 (seed 5, non-contrast: the IVC is right of the aorta, mostly separated by fat)
    assert dice(ivc, truth.mask("inferior_vena_cava")) >= 0.79
    arteries = np.isin(truth.labels, [i for i, n in truth.names.items() if "artery" in n or n == "aorta"])
    # one label per voxel: no predicted vein voxel is a true artery voxel core (eroded by 1 voxel)
    from scipy import ndimage
    core = ndimage.binary_erosion(arteries, iterations=1)
    veins = np.isin(res.labels.labels, [i for i, n in res.labels.names.items() if n in VEIN_NAMES])
    assert (veins & core).sum() <= 0.01 * core.sum()
    # the IVC lies on the patient's right of the aorta (LPS x grows to the left)
    x = np.arange(ivc.shape[2])
    aorta = res.labels.mask("aorta")
    assert (ivc.sum(axis=(0, 1)) @ x) / ivc.sum() < (aorta.sum(axis=(0, 1)) @ x) / aorta.sum()


def test_femoral_arteries_to_the_knee_on_cta():
    """T12 to the knees (300 × 180 × 180 at 2.5 × 2 × 2 mm): the iliacs become femoral at the
    pubic symphysis' top (since round 12 the phantom's truth splits there too; it split 21 mm higher
    before) and are followed down the thighs."""
    ph = make_vascular_phantom(0, lumen_hu=350, shape=(300, 180, 180), spacing_mm=(2.5, 2.0, 2.0))
    truth = ph.totalseg_labels()
    res = segment_vessels(ph.volume)
    # measured 0.955 / 0.917 (femoral), 0.939 / 0.952 (iliac) with the round 12 truth and oblique wall
    # (0.954 / 0.910, 0.914 / 0.926 with one wall on every ray; 0.925 / 0.881, 0.868 / 0.878 against
    # the old boundary at −305 mm with the same prediction: the union iliac + femoral is unchanged)
    for name, bar in (("femoral_artery_left", 0.93), ("femoral_artery_right", 0.89),
                      ("iliac_artery_left", 0.91), ("iliac_artery_right", 0.92)):
        assert dice(res.labels.mask(name), truth.mask(name)) >= bar, name
    assert not (res.labels.labels > 0)[_bone_truth(ph)].any()


def test_knee_length_non_contrast_marrow_does_not_switch_on_the_cta_hypothesis():
    """Issue 6: on the knee-length non-contrast phantom of seed 2 the homogeneous marrow of the
    femurs, pelvis and sacrum (150–700 HU) alone exceeded the "enhanced tissue" volume, so the CTA
    hypothesis ran first and took the sacrum's marrow (≈ 236 HU, walled by a cortex too thin for the
    CTA skeleton) for a contrast-filled aorta: every artery scored 0. Marrow inside the CTA
    skeleton is now left out of that volume."""
    ph = make_vascular_phantom(2, lumen_hu=40, shape=(300, 180, 180), spacing_mm=(2.5, 2.0, 2.0))
    small = ph.volume.hu.astype(np.float32)  # 2-mm pixels: the segmenter's own working grid
    sp = np.asarray(ph.volume.grid.spacing_mm, float)
    body = vessels_mod.threshold_body(small)
    marrow_free = body & ~vessels_mod.threshold_bones(small, sp, cortex_hu=400.0)
    # the failure's precondition: with the marrow counted the gate opens (measured 333 / 141 cm³)
    assert vessels_mod._enhanced_volume_mm3(small, body, sp) >= vessels_mod.ENHANCED_MIN_MM3
    assert vessels_mod._enhanced_volume_mm3(small, marrow_free, sp) < vessels_mod.ENHANCED_MIN_MM3
    res = segment_vessels(ph.volume)
    assert not res.contrast_detected and 20.0 <= res.lumen_hu_median <= 60.0
    truth = ph.totalseg_labels()
    # measured 0.971 (aorta), 0.856 / 0.919 (iliacs), 0.917 (right femoral) with the round 12 truth
    # (0.883 / 0.883 against the old boundary: the left track's error below −305 mm now counts as iliac)
    for name, bar in (("aorta", 0.93), ("iliac_artery_left", 0.83), ("iliac_artery_right", 0.89)):
        assert dice(res.labels.mask(name), truth.mask(name)) >= bar, name


@pytest.mark.parametrize("taper, expected", [(True, 19), (False, 17)])
def test_bifurcation_by_narrowing_starts_where_the_radius_left_the_aortic_calibre(monkeypatch, taper, expected):
    """A track of radius 10 mm (slices 20–30), 7.8 mm on slices 19 and 18 (0.78 ×: the aorta's
    partial-volumed end, above the 0.72 narrowing test), then 5.5 mm (an iliac): the narrowing is
    confirmed on slices 17–15, and the first iliac slice is 19, where the radius first fell below
    0.85 × the aorta (17 without the taper rule). No other tube is in the (fat) image."""
    monkeypatch.setattr(vessels_mod, "BIFURCATION_AT_TAPER_START", taper)
    img = np.full((31, 40, 40), -100.0)
    ctx = _Ctx(img, np.zeros(img.shape, bool), np.array([3.0, 2.0, 2.0]), False, -15.0)
    radius = {z: 10.0 if z >= 20 else (7.8 if z >= 18 else 5.5) for z in range(31)}
    fits = {z: _Fit(np.array([40.0, 40.0]), np.full(_N_RAYS, r), r, 1.0, 40.0) for z, r in radius.items()}
    bif, seeds = _bifurcation_by_radius(ctx, fits, 30)
    assert bif == expected
    assert list(seeds) == ["left"] or list(seeds) == ["right"]
    assert seeds[next(iter(seeds))][0] == expected
    # one slice at 0.9 × (a slightly narrower aorta) is not moved past: the bifurcation stays at 17
    fits[19] = fits[18] = _Fit(np.array([40.0, 40.0]), np.full(_N_RAYS, 9.0), 9.0, 1.0, 40.0)
    assert _bifurcation_by_radius(ctx, fits, 30)[0] == 17


def _blob_slice(shapes: list[tuple], *, contrast: bool) -> _Ctx:
    """Three 1-mm slices with ``shapes`` painted: ("oval", cy, cx, semi-axis y, semi-axis x) or ("disc", cy,
    cx, r) in mm. CTA: a 350-HU lumen in 40-HU tissue, edge at half-lumen (195 HU); plain CT: 40-HU
    tissue in fat, edge −15 HU."""
    y, x = np.mgrid[0:80, 0:80].astype(float)
    inside = np.zeros((80, 80), bool)
    for kind, cy, cx, *size in shapes:
        ay, ax = size if kind == "oval" else (size[0], size[0])
        inside |= ((y - cy) / ay) ** 2 + ((x - cx) / ax) ** 2 <= 1.0
    lumen, around, edge = (350.0, 40.0, 195.0) if contrast else (40.0, -100.0, -15.0)
    img = np.where(inside, lumen, around)[None].repeat(3, axis=0)
    return _Ctx(img, np.zeros(img.shape, bool), np.array([2.5, 1.0, 1.0]), contrast, edge)


@pytest.mark.parametrize("crotch", [True, False])
def test_cta_blob_is_split_only_where_it_shows_a_crotch(monkeypatch, crotch):
    """The aorta's last CTA slice is an oval lumen (23 × 13 mm), wider than deep as two touching iliacs
    are, but deepest at its middle: it is not split (without the crotch test it was split into two
    6.75-mm "iliacs" 4.3 mm either side of the midline, drawn over the aorta). Two touching 5.5-mm
    lumens 8 mm apart are split, each fitted on its own tube. On plain CT the outline is the outer
    wall (touching arteries show no crotch), and the oval is split as before."""
    monkeypatch.setattr(vessels_mod, "SPLIT_NEEDS_CROTCH", crotch)
    centre = np.array([40.0, 40.0])
    oval = _split(_blob_slice([("oval", 40.0, 40.0, 6.5, 11.5)], contrast=True), 1, centre, 9.0)
    if crotch:
        assert oval is None
    else:
        assert oval is not None
        assert oval["left"].centre_mm[1] == pytest.approx(44.33, abs=0.05)
        assert oval["right"].centre_mm[1] == pytest.approx(35.67, abs=0.05)
        assert oval["left"].radius_mm == oval["right"].radius_mm == pytest.approx(6.75, abs=0.05)
    two = _split(_blob_slice([("disc", 40.0, 36.0, 5.5), ("disc", 40.0, 44.0, 5.5)], contrast=True), 1, centre, 9.0)
    assert two is not None
    for side, cx in (("left", 44.0), ("right", 36.0)):
        assert np.allclose(two[side].centre_mm, [40.0, cx], atol=0.15)
        assert two[side].radius_mm == pytest.approx(5.5, abs=0.15)
    plain = _split(_blob_slice([("oval", 40.0, 40.0, 6.5, 11.5)], contrast=False), 1, centre, 9.0)
    assert plain is not None and set(plain) == {"left", "right"}


def test_split_below_a_narrowed_last_fit_starts_at_the_aortic_calibre():
    """Round 30 (issue 6): an aorta track (13.4 mm, clean, slices 3–11) ends on one narrowed fit (6.0 mm,
    slice 2, too few slices for the narrowing test); two 4-mm iliacs lie 7.5 mm either side of its centre
    on slices 1–0. Starts sized by the last fit (0.45 × 6.0 = 2.7 mm out) lie in the fat between the
    iliacs and no split is found (before: no bifurcation at all); starts sized by the calibre above
    (0.45 × 13.4 = 6.0 mm out) find both on the first slice below the end."""
    assert split_start_radius_mm(6.0, [13.4] * 8) == pytest.approx(13.4)
    assert split_start_radius_mm(10.0, [13.4] * 8) == pytest.approx(10.0)  # ≥ 0.72 × the calibre: kept
    assert split_start_radius_mm(6.0, []) == pytest.approx(6.0)  # no clean fit above: nothing to size by
    y, x = np.mgrid[0:100, 0:100].astype(float)
    img = np.full((12, 100, 100), -100.0)
    for z in range(3, 12):
        img[z][(y - 50) ** 2 + (x - 50) ** 2 <= 13.4 ** 2] = 40.0
    img[2][(y - 50) ** 2 + (x - 50) ** 2 <= 6.0 ** 2] = 40.0
    for z in (0, 1):
        for cx in (42.5, 57.5):
            img[z][(y - 50) ** 2 + (x - cx) ** 2 <= 4.0 ** 2] = 40.0
    ctx = _Ctx(img, np.zeros(img.shape, bool), np.array([2.5, 1.0, 1.0]), False, -15.0)
    centre = np.array([50.0, 50.0])
    fits = {z: _Fit(centre, np.full(_N_RAYS, 13.4), 13.4, 1.0, 40.0) for z in range(3, 12)}
    fits[2] = _Fit(centre, np.full(_N_RAYS, 6.0), 6.0, 1.0, 40.0)
    assert _split(ctx, 1, centre, 6.0) is None
    z, seeds = _bifurcation_by_radius(ctx, fits, 11)
    assert z == 1 and set(seeds) == {"left", "right"}
    for side, cx in (("left", 57.6), ("right", 42.4)):
        u, f = seeds[side]
        assert u == 1
        assert np.allclose(f.centre_mm, [50.0, cx], atol=0.15)
        assert f.radius_mm == pytest.approx(3.75, abs=0.15)


def _box_body_with_spine(nz: int) -> tuple[np.ndarray, np.ndarray]:
    """(body, bone) of ``nz`` × 80 × 80 voxels: a box body centred at y = x = 40 px and a spine
    behind the centre on every slice (y 50–59, x 35–45)."""
    body = np.zeros((nz, 80, 80), bool)
    body[:, 5:76, 10:71] = True
    bone = np.zeros_like(body)
    bone[:, 50:60, 35:46] = True
    return body, bone


def test_pubic_symphysis_top_is_the_highest_front_midline_bone():
    """A box body (centre y = 40 px, 2-mm pixels): a spine behind the centre on every slice, a
    sacral promontory reaching 10 mm in front of the centre, a one-slice calcification in front and
    the pubis (slices 0–9) 40 mm in front: the symphysis' top is slice 9."""
    nz, sp = 40, (3.0, 2.0, 2.0)
    body, bone = _box_body_with_spine(nz)
    bone[25:30, 32:42, 34:47] = True  # promontory: 16–2 mm in front of the centre, not ≥ 25 mm
    bone[20, 15:20, 36:45] = True     # a calcification on one slice only
    bone[:10, 15:22, 34:47] = True    # pubic symphysis, ≈ 40 mm in front, 12 mm either side
    assert pubic_symphysis_top(bone, body, sp, below_z=nz) == 9
    assert pubic_symphysis_top(bone, body, sp, below_z=6) == 5  # only below the given slice
    bone[:10, 15:22, 34:47] = False
    assert pubic_symphysis_top(bone, body, sp, below_z=nz) is None
    # a pubis off to the side (> 12 mm from the midline: a pubic ramus) is not the symphysis
    bone[:10, 15:22, 10:20] = True
    assert pubic_symphysis_top(bone, body, sp, below_z=nz) is None


def test_pubic_symphysis_top_follows_the_bones_thin_cap():
    """The same box body (2-mm pixels, 3-mm slices): the pubis (slices 0–9, 7 × 13 px = 364 mm²)
    under a rounded top, slice 10 holding 2 × 3 px = 24 mm² on top of it (< 60 mm²: missed by the
    area test alone): the top is slice 10. The cap is followed only where it touches the bone
    below (a blob 2 px behind it is not), and only ``cap_mm`` up: a thin spike over 3 slices stops
    after 5 mm (1 slice of 3 mm); ``cap_mm=None`` gives the area test's slice 9."""
    nz, sp = 40, (3.0, 2.0, 2.0)
    body, bone = _box_body_with_spine(nz)
    bone[:10, 15:22, 34:47] = True    # pubic symphysis, ≈ 40 mm in front
    bone[10, 16:18, 39:42] = True     # its cap: 24 mm², on the bone below
    assert pubic_symphysis_top(bone, body, sp, below_z=nz) == 10
    assert pubic_symphysis_top(bone, body, sp, below_z=nz, cap_mm=None) == 9
    assert pubic_symphysis_top(bone, body, sp, below_z=10) == 9  # never at or above below_z
    bone[10] = False
    bone[10, 24:26, 39:42] = True     # front midline too, but 2 px behind the pubis' last row (21)
    assert pubic_symphysis_top(bone, body, sp, below_z=nz) == 9
    bone[10] = False
    bone[10:13, 17:19, 40:42] = True  # a spike over 3 slices on the top: only 5 mm of it is the cap
    assert pubic_symphysis_top(bone, body, sp, below_z=nz) == 10
    assert pubic_symphysis_top(bone, body, sp, below_z=nz, cap_mm=9.0) == 12


def test_same_tube_compares_centres_over_the_shared_slices():
    """Two tracks of a 10-mm tube on slices 0–19 (2.5-mm slices): one 4 mm off (< 0.5 × 10 mm) is
    the same tube, one 6 mm off is not; sharing only 8 slices (20 mm < 25 mm) is no evidence."""
    def track(zs, dx):
        return {z: _Fit(np.array([50.0, 50.0 + dx]), np.full(_N_RAYS, 10.0), 10.0, 1.0, 40.0) for z in zs}
    a = track(range(20), 0.0)
    assert same_tube(a, track(range(10, 30), 4.0), 2.5)
    assert not same_tube(a, track(range(10, 30), 6.0), 2.5)
    assert not same_tube(a, track(range(12, 30), 0.0), 2.5)
    assert same_tube(a, track(range(10, 30), 6.0), 2.5, max_apart=0.7)


def test_real_iliac_becomes_femoral_at_the_top_of_the_pubic_symphysis(shared_data):
    """TotalSegmentator's iliac_artery masks on this scan end 1–3 slices below the top of its
    pubic symphysis (the highest slice where its hip labels meet the midline, slice 6): vascalc's
    femoral labels start just below that top (docs/segmentation.md, iliac/femoral boundary)."""
    folder = shared_data / "ct" / "totalseg_example"
    vol = load_volume(folder / "example_ct.nii.gz")
    ref = load_labelmap(folder / "example_seg_fast_force_split.nii.gz", vol.grid)
    hip = ref.mask("hip_left") | ref.mask("hip_right")
    mid = np.argwhere(ref.mask("sacrum")).mean(axis=0)[2]
    xx = np.arange(vol.shape[2])
    near_mid = hip & (np.abs(xx - mid) * vol.grid.spacing_mm[2] <= 12.0)[None, None, :]
    top = int(np.flatnonzero(near_mid.any(axis=(1, 2))).max())
    assert top == 6
    res = segment_vessels(vol)
    for side in ("left", "right"):
        fem = np.flatnonzero(res.labels.mask(f"femoral_artery_{side}").any(axis=(1, 2)))
        il = np.flatnonzero(res.labels.mask(f"iliac_artery_{side}").any(axis=(1, 2)))
        assert fem.size and fem.max() == top - 1, side
        assert il.min() == top, side


# --- real scans ----------------------------------------------------------------------------------

def test_iliac_cone_floor_grows_at_the_least_angle_up_to_its_reach():
    # tan 45° = 1: floor = min(d, 20) − 5 → −5, 0, 10, 15, 15 at 0, 5, 15, 20, 40 mm of descent
    floor = iliac_cone_floor_mm([0.0, 5.0, 15.0, 20.0, 40.0], min_angle_deg=45.0, reach_mm=20.0, slack_mm=5.0)
    np.testing.assert_allclose(floor, [-5.0, 0.0, 10.0, 15.0, 15.0], atol=1e-12)
    # defaults (10°, 45 mm, 5 mm): tan 10° = 0.176327 → 30 mm: 0.2898; ≥ 45 mm: 2.9347
    np.testing.assert_allclose(iliac_cone_floor_mm([30.0, 90.0]), [0.28980, 2.93471], atol=1e-4)


def test_iliac_guide_does_not_go_back_to_the_midline_below_its_seed():
    """A tube in fat drifting back towards the midline below the seed (x = seed − descent / 3)
    against the true artery, which leaves laterally at 45° but is buried in fat-free tissue for 12
    slices below the seed: without the cone the cheapest path takes the medial tube; with it the
    path goes with the artery."""
    nz, ny, nx = 24, 40, 60
    sp = (3.0, 1.5, 1.5)
    img = np.full((nz, ny, nx), -100.0, np.float32)  # fat
    yy, xx = np.mgrid[:ny, :nx] * 1.5
    for z in range(nz):
        d = z * 3.0
        decoy = np.hypot(yy - 30.0, xx - (15.0 - d / 3.0)) <= 4.5  # back towards the midline
        art = np.hypot(yy - 30.0, xx - (15.0 + d)) <= 4.5  # 45° towards the patient's left (+x)
        img[z][decoy] = 40.0
        img[z][art] = 40.0
        if 1 <= z <= 12:  # artery buried: tissue all around it, no fat plane; the medial tube in fat
            img[z] = 40.0
            img[z][np.hypot(yy - 30.0, xx - (15.0 - d / 3.0)) <= 9.0] = -100.0
            img[z][decoy] = 40.0
    hu = img[::-1].copy()  # canonical z grows caudally in the volume; the guide runs towards lower z
    ctx = _Ctx(hu, np.zeros(hu.shape, bool), np.array(sp), False, -15.0)
    z0 = nz - 1
    centre = lambda g, z: g[z][1]  # noqa: E731
    old = vessels_mod.ILIAC_CONE
    try:
        vessels_mod.ILIAC_CONE = None
        plain = _iliac_guide(ctx, z0, np.array([30.0, 15.0]), 0, "left")
        vessels_mod.ILIAC_CONE = (10.0, 45.0, 5.0)
        coned = _iliac_guide(ctx, z0, np.array([30.0, 15.0]), 0, "left")
    finally:
        vessels_mod.ILIAC_CONE = old
    z = z0 - 15  # 45 mm below the seed: artery at x 15 + 45 = 60 mm, the medial tube at 0 mm
    assert abs(centre(plain, z) - 0.0) < 3.0
    assert abs(centre(coned, z) - 60.0) < 3.0


def test_lateral_bone_front_is_the_front_of_the_thick_lateral_bone_only():
    """1.5-mm pixels. Slice 0: a femoral head (disc of radius 20 mm) centred 75 mm lateral, 60 mm
    deep, so its front is at 40 mm = row 26.7; a thin iliac-wing plate (6 mm) further forward
    and lateral, and a thick vertebra-like block in front of it near the midline, neither of which
    counts. Slice 1: the plate and the block alone, no front (NaN)."""
    sp = (1.5, 1.5)
    ny, nx = 80, 100
    yy, xx = np.mgrid[:ny, :nx] * 1.5
    lateral_mm = np.arange(nx) * 1.5 - 15.0  # the seed (midline) at x = 15 mm
    bone = np.zeros((2, ny, nx), bool)
    plate = (np.abs(yy - 20.0) <= 3.0) & (xx >= 70.0) & (xx <= 140.0)
    block = (yy >= 5.0) & (yy <= 45.0) & (xx <= 45.0)
    bone[:] = plate | block
    bone[0] |= np.hypot(yy - 60.0, xx - 90.0) <= 20.0
    front = lateral_bone_front_px(bone, sp, lateral_mm, min_lateral_mm=50.0, core_radius_mm=12.0)
    assert front[0] == pytest.approx(40.0 / 1.5, abs=1.0)
    assert np.isnan(front[1])
    # without the lateral limit the block's front (5 mm: row 3.3) is taken
    near = lateral_bone_front_px(bone, sp, lateral_mm, min_lateral_mm=-100.0, core_radius_mm=12.0)
    assert near[1] == pytest.approx(5.0 / 1.5, abs=1.0)


def test_iliac_guide_passes_in_front_of_the_hip():
    """One tube in fat runs straight down for 8 slices; then the artery turns forward at 45°
    (y = 100 − 3 (k − 8) mm) and is buried in fat-free tissue for 6 slices, while a tube in fat
    carries straight on behind it (y = 100 mm). From slice 14 on a thick bone (the femoral head)
    lies 55–105 mm lateral with its front at y = 85 mm. Without the hip rule the path stays on the
    tube behind, through the head's level; with it, the path follows the artery in front (the two
    courses agree above the hip, so the second one is kept)."""
    nz, ny, nx = 24, 100, 100
    sp = (3.0, 1.5, 1.5)
    img = np.full((nz, ny, nx), -100.0, np.float32)
    bone = np.zeros((nz, ny, nx), bool)
    yy, xx = np.mgrid[:ny, :nx] * 1.5
    artery_y = lambda k: 100.0 - 3.0 * max(k - 8, 0)  # noqa: E731
    for k in range(nz):
        x = 15.0 + 1.5 * k
        art = np.hypot(yy - artery_y(k), xx - x) <= 4.5
        decoy = np.hypot(yy - 100.0, xx - x) <= 4.5
        if 9 <= k <= 14:
            img[k] = 40.0
            img[k][np.hypot(yy - 100.0, xx - x) <= 9.0] = -100.0
        img[k][art | decoy] = 40.0
        if k >= 14:
            bone[k] = (yy >= 85.0) & (yy <= 140.0) & (xx >= 70.0) & (xx <= 120.0)
    img[bone] = 400.0
    ctx = _Ctx(img[::-1].copy(), bone[::-1].copy(), np.array(sp), False, -15.0)
    z0 = nz - 1
    old = vessels_mod.ILIAC_IN_FRONT_OF_HIP
    try:
        vessels_mod.ILIAC_IN_FRONT_OF_HIP = None
        plain = _iliac_guide(ctx, z0, np.array([100.0, 15.0]), 0, "left")
        vessels_mod.ILIAC_IN_FRONT_OF_HIP = (50.0, 12.0, 5.0, 15.0)
        kept = _iliac_guide(ctx, z0, np.array([100.0, 15.0]), 0, "left")
        # compared with the rule-less course down to 15 mm *below* the hip's first slice, where the
        # two must differ, the ruled course is refused
        vessels_mod.ILIAC_IN_FRONT_OF_HIP = (50.0, 12.0, 5.0, -15.0)
        refused = _iliac_guide(ctx, z0, np.array([100.0, 15.0]), 0, "left")
    finally:
        vessels_mod.ILIAC_IN_FRONT_OF_HIP = old
    # (across the buried stretch the path cuts the corner through tissue, which costs the same)
    for k in (16, 19, 23):
        assert abs(plain[z0 - k][0] - 100.0) < 3.0
        assert abs(kept[z0 - k][0] - artery_y(k)) < 3.0
        assert abs(refused[z0 - k][0] - 100.0) < 3.0


@pytest.mark.parametrize("seed, right_bar", [(0, 0.50), (1, 0.72)])
def test_coarse_non_contrast_right_iliac_stays_on_its_side(seed, right_bar):
    """On the coarse test grid (3 × 3.2 × 3.2 mm) without metal the right iliac path used to go back
    to a small tube at the midline: measured right iliac 0.028 / 0.157 (seeds 0 / 1) without the
    iliac cone, 0.555 / 0.780 with it (left 0.161 / 0.134 → 0.312 / 0.318)."""
    ph = make_vascular_phantom(seed, lumen_hu=40.0)
    truth = ph.totalseg_labels()
    res = segment_vessels(ph.volume)
    assert dice(res.labels.mask("iliac_artery_right"), truth.mask("iliac_artery_right")) >= right_bar
    assert dice(res.labels.mask("iliac_artery_left"), truth.mask("iliac_artery_left")) >= 0.28


def test_path_calibre_is_the_median_radius_of_the_paths_lowest_slices():
    # path on slices 7–10 (3-mm slices); 15 mm → the lowest 5 path slices that have a radius: only
    # 7, 8, 9, 10 exist → median(7, 6, 5, 9) = 6.5; 6 mm → slices 7, 8 → 6.5; 3 mm → slice 7 → 7.0.
    # Slice 5 lies below the path (a swollen greedy fit) and slice 11 has no radius: neither counts
    radii = {11: 3.0, 10: 9.0, 9: 5.0, 8: 6.0, 7: 7.0, 5: 100.0}
    path = [10, 9, 8, 7]
    assert path_calibre_mm(radii, path, spacing_z_mm=3.0, length_mm=15.0) == pytest.approx(6.5)
    assert path_calibre_mm(radii, path, spacing_z_mm=3.0, length_mm=6.0) == pytest.approx(6.5)
    assert path_calibre_mm(radii, path, spacing_z_mm=3.0, length_mm=3.0) == pytest.approx(7.0)
    assert path_calibre_mm(radii, [10, 9, 8, 7, 6], spacing_z_mm=1.5, length_mm=4.5) == pytest.approx(6.0)
    assert path_calibre_mm({5: 4.0}, [10, 9], spacing_z_mm=3.0, length_mm=15.0) is None


def test_real_non_contrast_abdomen(shared_data):
    folder = shared_data / "ct" / "totalseg_example"
    vol = load_volume(folder / "example_ct.nii.gz")
    ref = load_labelmap(folder / "example_seg_fast_force_split.nii.gz", vol.grid)
    res = segment_vessels(vol)
    assert not res.contrast_detected
    # measured 0.922 vs TotalSegmentator (3 mm, non-contrast; 0.914 before the bifurcation was put
    # where the track's radius first left the aortic calibre)
    assert dice(res.labels.mask("aorta"), ref.mask("aorta")) >= 0.89
    # both iliac arteries together (TotalSegmentator has no femoral label: its iliac runs on down
    # the groin): measured 0.673 (0.649 before round 3, 0.550 before the psoas hypothesis and the half-maximum outline,
    # 0.312 before the minimal-path guide)
    names = ("iliac_artery_left", "iliac_artery_right", "femoral_artery_left", "femoral_artery_right")
    mine = np.any([res.labels.mask(n) for n in names], axis=0)
    assert dice(mine, ref.mask("iliac_artery_left") | ref.mask("iliac_artery_right")) >= 0.63
    # per side, iliac label only: measured 0.773 right / 0.662 left with the outline below the path
    # held to the path's calibre (round 6; 0.765 / 0.654 before); 0.767 right / 0.659 left with the bifurcation at the
    # taper's start (0.752 / 0.636 before), the iliac → femoral boundary at the pubic symphysis' top
    # (0.738 / 0.626 at the femoral heads' centre); 0.738 right (0.728
    # before the half-maximum outline, 0.462
    # before the minimal path), 0.626 left (0.380 before the psoas hypothesis — the path ran along
    # the psoas' front edge for 25 slices where the artery lies between it and the vein — 0.241
    # before the minimal path)
    assert dice(res.labels.mask("iliac_artery_right"), ref.mask("iliac_artery_right")) >= 0.74
    assert dice(res.labels.mask("iliac_artery_left"), ref.mask("iliac_artery_left")) >= 0.63
    # the iliacs are followed on the artery, not beside it: on the slices both masks share, the
    # drawn centre (iliac + femoral label) lies within 6 mm of TotalSegmentator's on 47 of 56 left
    # and 56 of 58 right slices (round 5; the left course along the psoas' front edge was 18 of 45
    # before the psoas hypothesis). What the left loses is outline, not course (docs round 5)
    sp_yx = np.asarray(vol.grid.spacing_mm)[1:]
    for side, least in (("left", 44), ("right", 54)):
        mine_s = res.labels.mask(f"iliac_artery_{side}") | res.labels.mask(f"femoral_artery_{side}")
        ref_s = ref.mask(f"iliac_artery_{side}")
        both = np.flatnonzero(mine_s.any(axis=(1, 2)) & ref_s.any(axis=(1, 2)))
        off = [np.hypot(*((np.argwhere(mine_s[z]).mean(0) - np.argwhere(ref_s[z]).mean(0)) * sp_yx)) for z in both]
        assert len(both) >= 50 and int((np.asarray(off) <= 6.0).sum()) >= least, (side, len(both), off)
    # below the minimal path's end (the lowest 9 iliac-label slices, above the pubic boundary) the
    # greedy fit of the left artery ran on into its touching vein: 16–25 voxels per slice against
    # 9–12 in the reference. The outline is now held to the calibre of the path's last 15 mm
    # (measured ≤ 15 voxels on both sides; round 6)
    perm, flips = _canonical_frame(vol.grid.direction_matrix)
    for side in ("left", "right"):
        il = vessels_mod._to_canonical(res.labels.mask(f"iliac_artery_{side}"), perm, flips)
        counts = il.sum(axis=(1, 2))
        low = np.flatnonzero(counts)[:9]
        assert counts[low].max() <= 15, (side, counts[low])
    # no TotalSegmentator bone voxel in any artery mask (what calcium scoring counts); the veins,
    # never scored, may touch the partial-volumed rim of TotalSegmentator's L5 (< 64–94 HU there:
    # 2 voxels measured) but stay off it otherwise
    bone = np.isin(ref.labels, [i for i, n in ref.names.items() if n.startswith(BONE_PREFIXES)])
    vein_ids = [i for i, n in res.labels.names.items() if n in VEIN_NAMES]
    arteries = (res.labels.labels > 0) & ~np.isin(res.labels.labels, vein_ids)
    assert not arteries[bone].any()
    veins = np.isin(res.labels.labels, vein_ids)
    assert (veins & bone).sum() <= 0.01 * veins.sum()
    assert not (veins & bone & (vol.hu > 100)).any()
    # the left hip implant: no slice of an artery is drawn with its centre within reach of the
    # streaks (one slice beyond the slices holding metal along z and 40 mm in-plane of a metal voxel,
    # the segmenter's rule); the left external iliac 50–80 mm medial to the implant is drawn there
    metal = vol.hu > 2000
    assert metal.any()
    sp = np.asarray(vol.grid.spacing_mm)
    metal_mm = np.argwhere(metal) * sp
    for name in ("iliac_artery_left", "femoral_artery_left", "iliac_artery_right", "femoral_artery_right"):
        m = res.labels.mask(name)
        for z in np.flatnonzero(m.any(axis=(1, 2))):
            c = np.argwhere(m[z]).mean(axis=0) * sp[1:]
            near = ((np.abs(metal_mm[:, 0] - z * sp[0]) <= sp[0] + 1e-3)
                    & (np.hypot(*(metal_mm[:, 1:] - c).T) <= 40.0))
            assert not near.any(), (name, z)
    # the IVC beside the aorta (measured 0.599; TotalSegmentator's IVC runs up into the liver,
    # where no fat edge is left to follow)
    assert dice(res.labels.mask("inferior_vena_cava"), ref.mask("inferior_vena_cava")) >= 0.55


def test_real_contrast_ct_aorta(shared_data):
    folder = shared_data / "ct" / "totalseg_dicom"
    vol = load_volume(folder)
    ref = load_labelmap(folder / "example_seg_dicom.nii.gz", vol.grid)
    res = segment_vessels(vol)
    assert res.contrast_detected
    # measured 0.865 (20 slices at T11–T12, lumen ≈ 150 HU)
    assert dice(res.labels.mask("aorta"), ref.mask("aorta")) >= 0.84
    # the retro-hepatic IVC has no fat edge here and the right crus (a muscle tube between it and
    # the aorta) is not enhanced: the IVC is reported absent, not guessed
    assert "inferior_vena_cava" in res.labels.absent_names()
    assert any("inferior vena cava not found" in n for n in res.notes)


# ----------------------------------------------------------------------------------------------
# the psoas hypothesis and the half-maximum outline (non-contrast iliac work, round 2)
# ----------------------------------------------------------------------------------------------

def test_follow_large_mass_keeps_the_psoas_and_leaves_a_touching_artery_out():
    """A muscle (r = 15 mm) drifts 1 mm per slice; an artery (r = 5 mm) touches it with no fat
    plane on every slice, and on slices 6–7 a second large mass (r = 12 mm) merges with it. The
    followed mass is the muscle: ≥ 97 % of it, none of the artery's centre, and the merged
    neighbour is not annexed beyond the creep limit (≤ 2 pixels past the muscle)."""
    n, ny, nx = 12, 100, 120
    sp = (1.0, 1.0)
    yy, xx = np.mgrid[0:ny, 0:nx] * 1.0
    inside = np.zeros((n, ny, nx), bool)
    muscle = np.zeros_like(inside)
    for k in range(n):
        c = (50.0, 40.0 + k)
        muscle[k] = np.hypot(yy - c[0], xx - c[1]) <= 15.0
        artery = np.hypot(yy - c[0], xx - (c[1] + 20.0)) <= 5.0   # touching: 15 + 5 = 20 mm apart
        inside[k] = muscle[k] | artery
        if k in (6, 7):
            inside[k] |= np.hypot(yy - c[0], xx - (c[1] + 36.0)) <= 12.0  # a merged neighbour
    got = follow_large_mass(inside, sp, muscle[0], radius_mm=8.0, creep_mm=2.0)
    assert got.shape == inside.shape
    for k in range(n):
        assert (got[k] & muscle[k]).sum() >= 0.97 * muscle[k].sum()
        assert not got[k, 50, int(40 + k + 20)]                      # the artery's centre
        assert (got[k] & ~ndimage.binary_dilation(muscle[k], iterations=2)).sum() == 0
    # nothing to follow: an empty seed gives an empty mask
    assert not follow_large_mass(inside, sp, np.zeros((ny, nx), bool)).any()


def test_half_max_radii_finds_the_blurred_edge_and_keeps_rays_ending_on_a_neighbour():
    """A 40-HU disc of radius 5.3 mm in −100-HU fat, blurred (σ = 1 mm): from the tracker's
    −15-HU radii shrunk to 4.5 mm, the half-maximum (−30 HU) radius is back within 0.25 mm of
    5.3 mm on every ray in fat. Rays towards a touching 45-HU neighbour (no fat within reach)
    get the same correction (the tube is round; growing only its fat side would shift it), and a
    tube with no fat around at all keeps the radii it was given."""
    sp = (0.5, 0.5)
    yy, xx = np.mgrid[0:120, 0:120] * 0.5
    img = np.full((120, 120), -100.0)
    img[np.hypot(yy - 30.0, xx - 30.0) <= 5.3] = 40.0
    img = ndimage.gaussian_filter(img, 2.0)  # σ = 2 px = 1 mm
    got = half_max_radii(img, sp, np.array([30.0, 30.0]), np.full(_N_RAYS, 4.5), 40.0)
    np.testing.assert_allclose(got, 5.3, atol=0.25)
    # a neighbour fills the whole +x half-plane beyond the disc: those rays never reach fat
    img2 = img.copy()
    img2[:, xx[0] >= 34.0] = 45.0
    got2 = half_max_radii(img2, sp, np.array([30.0, 30.0]), np.full(_N_RAYS, 4.5), 40.0)
    away = _UNIT[:, 1] < -0.5
    np.testing.assert_allclose(got2[away], 5.3, atol=0.25)
    towards_x = _UNIT[:, 1] > 0.9
    shift = float(np.median(got2[_UNIT[:, 1] < 0.0] - 4.5))
    np.testing.assert_allclose(got2[towards_x], 4.5 + shift, atol=0.3)
    assert 0.5 < shift < 1.1
    # buried in tissue: nothing to measure, nothing changed
    got3 = half_max_radii(np.full((120, 120), 45.0), sp, np.array([30.0, 30.0]), np.full(_N_RAYS, 4.5), 40.0)
    np.testing.assert_array_equal(got3, 4.5)


def test_path_wall_support_ranks_a_tube_in_fat_above_a_muscle_edge():
    """A course along a tube in fat (r = 5 mm) has its wall seen on every ray (support 1.0); a
    course along the front edge of a large muscle, 4 mm inside it, on fewer than 70 %; slices
    where no tube is fitted count 0 (a course through fat: 0)."""
    nz = 6
    sp = np.array([3.0, 1.0, 1.0])
    img = np.full((nz, 80, 100), -100.0, np.float32)
    yy, xx = np.mgrid[0:80, 0:100] * 1.0
    img[:, np.hypot(yy - 20.0, xx - 20.0) <= 5.0] = 40.0
    img[:, 30:75, 50:95] = 45.0
    ctx = _Ctx(img, np.zeros(img.shape, bool), sp, False, -15.0)
    tube = path_wall_support(ctx, {z: np.array([20.0, 20.0]) for z in range(nz)}, 5.0)
    edge = path_wall_support(ctx, {z: np.array([34.0, 72.0]) for z in range(nz)}, 5.0)
    fat = path_wall_support(ctx, {z: np.array([70.0, 10.0]) for z in range(nz)}, 5.0)
    assert tube == pytest.approx(1.0)
    assert edge < 0.7
    assert fat == 0.0
    assert path_wall_support(ctx, {}, 5.0) == 0.0


def _artery_and_vein_in_fat(n_slices: int, lateral: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n_slices`` × 80 × 80 image at 1-mm pixels: fat (−100 HU), a femoral/iliac artery (r = 4 mm,
    40 HU) and its vein (r = 4.5 mm) touching it behind and medial of it (centres 8 mm apart;
    ``lateral`` +1 for the patient's left, −1 for the right). Returns (image, artery centre, vein
    centre), centres in (y, x) mm."""
    img = np.full((n_slices, 80, 80), -100.0, np.float32)
    yy, xx = np.mgrid[0:80, 0:80] * 1.0
    a_c = np.array([35.0, 40.0])
    v_c = a_c + 8.0 * np.array([np.cos(0.6), -lateral * np.sin(0.6)])
    img[:, np.hypot(yy - a_c[0], xx - a_c[1]) <= 4.0] = 40.0
    img[:, np.hypot(yy - v_c[0], xx - v_c[1]) <= 4.5] = 40.0
    return img, a_c, v_c


@pytest.mark.parametrize("side", ["left", "right"])
def test_artery_in_front_moves_a_track_off_the_vein_and_leaves_an_artery_alone(side):
    """A femoral artery (r = 4 mm) in fat with its vein (r = 4.5 mm) touching it behind and medial
    of it (canonical frame: y posterior, x patient-left). A track sitting on the vein finds the
    artery in front of it / lateral (centre within 1 mm of the truth); a track on the artery finds
    nothing there (fat), so it stays."""
    img, a_c, v_c = _artery_and_vein_in_fat(1, 1.0 if side == "left" else -1.0)
    ctx = _Ctx(img, np.zeros(img.shape, bool), np.array([2.5, 1.0, 1.0]), False, -15.0)
    on_vein = _Fit(v_c, np.full(_N_RAYS, 4.5), 4.5, 0.7, 40.0)
    found = artery_in_front(ctx, 0, on_vein, side)
    assert found is not None
    assert np.hypot(*(found.centre_mm - a_c)) <= 1.0
    assert found.radius_mm == pytest.approx(4.0, abs=1.0)
    on_artery = _Fit(a_c, np.full(_N_RAYS, 4.0), 4.0, 0.9, 40.0)
    assert artery_in_front(ctx, 0, on_artery, side) is None


def _compartment_ctx() -> tuple[_Ctx, np.ndarray]:
    """2.5-mm slices: an artery (r = 4.5 mm) in fat along z; on slices 24 → 15 it lies inside the
    back of a muscle compartment with no fat edge between them, the compartment's radius growing
    6 → 15 mm slice by slice forwards (smaller y), tangent to the artery from inside."""
    nz = 40
    img = np.full((nz, 80, 80), -100.0, np.float32)
    yy, xx = np.mgrid[0:80, 0:80] * 1.5
    centre = np.array([60.0, 60.0])
    img[:, np.hypot(yy - centre[0], xx - centre[1]) <= 4.5] = 40.0
    for k, z in enumerate(range(24, 14, -1)):
        r = 6.0 + k
        img[z][np.hypot(yy - (centre[0] - (r - 4.5)), xx - centre[1]) <= r] = 45.0
    return _Ctx(img, np.zeros(img.shape, bool), np.array([2.5, 1.5, 1.5]), False, -15.0), centre


def test_greedy_artery_fit_must_keep_the_track_calibre(monkeypatch):
    """Round 9 (bench knee-length non-contrast seed 1 right femoral 0.063): a buried artery is
    fitted as the growing muscle compartment around it; each slice's radius is within the
    previous one's tolerance, so the capped fit crept forwards 3 mm a slice, 16–18 mm off by the
    compartment's end, and lost the artery below it. With the calibre gate (the median radius of
    the last 8 fits, ±30 %) the buried slices are gaps (empty, uncertain) and the track picks the
    artery up again, on its centre, below the compartment. Where the calibre's band reaches the
    cap (an iliac), the gate is off and the cap alone bounds the fit, exactly as before."""
    ctx, centre = _compartment_ctx()
    z0 = ctx.img.shape[0] - 1
    seed = _Fit(centre.copy(), np.full(_N_RAYS, 4.5), 4.5, 1.0, 40.0)
    kw = dict(r_range_mm=(2.0, 14.0), max_shift_mm=6.5, min_hits=0.3, max_gap_mm=50.0, coast_mm=12.0, side="left")
    fits, uncertain, _ = vessels_mod._track(ctx, z0, seed, -1, r_cap_mm=7.5, **kw)
    assert sorted(uncertain) == list(range(15, 25))
    assert sorted(fits) == [*range(0, 15), *range(25, z0)]
    for z in fits:
        assert np.hypot(*(fits[z].centre_mm - centre)) <= 0.5
        assert fits[z].radius_mm == pytest.approx(4.5, abs=0.5)
    monkeypatch.setattr(vessels_mod, "CALIBRE_WINDOW", None)
    crept, crept_unc, _ = vessels_mod._track(ctx, z0, seed, -1, r_cap_mm=7.5, **kw)
    assert max(np.hypot(*(f.centre_mm - centre)) for f in crept.values()) > 15.0
    assert not any(z in crept for z in range(0, 15))       # the artery below is lost
    # a cap within the band (4.3 mm + 30 % > 5.5 mm): gated or not, the same track
    with_cap, _, _ = vessels_mod._track(ctx, z0, seed, -1, r_cap_mm=5.5, **kw)
    assert all(z in with_cap for z in range(15, 25))       # the swollen fits the gate would drop
    monkeypatch.setattr(vessels_mod, "CALIBRE_WINDOW", 8)
    gated_cap, _, _ = vessels_mod._track(ctx, z0, seed, -1, r_cap_mm=5.5, **kw)
    assert sorted(with_cap) == sorted(gated_cap)
    assert all(np.array_equal(with_cap[z].centre_mm, gated_cap[z].centre_mm) for z in with_cap)


@pytest.mark.parametrize("side", ["left", "right"])
def test_artery_in_front_finds_an_artery_a_fat_plane_away_from_its_vein(side, monkeypatch):
    """Round 9 (dev legs non-contrast seed 2 left femoral 0.009, bench seed 0 right 0.558): the
    phantom's femoral vein runs 12–13 mm (centre to centre) behind-medial of its artery, ≈ 4 mm of
    fat between the walls, so a track on the vein never saw the artery (the tube had to lie within
    3 mm). Here the walls are 4 mm apart (r 4 and 4.5 mm, 12.5 mm between centres): found within
    5 mm, missed within 3 mm; 4 mm further away (8.5 mm of fat) it is not taken."""
    lateral = 1.0 if side == "left" else -1.0
    yy, xx = np.mgrid[0:80, 0:80] * 1.0
    a_c = np.array([35.0, 40.0])
    for apart_mm, expect in ((12.5, True), (16.5, False)):
        v_c = a_c + apart_mm * np.array([np.cos(1.0), -lateral * np.sin(1.0)])   # behind-medial
        img = np.full((1, 80, 80), -100.0, np.float32)
        img[0][np.hypot(yy - a_c[0], xx - a_c[1]) <= 4.0] = 40.0
        img[0][np.hypot(yy - v_c[0], xx - v_c[1]) <= 4.5] = 40.0
        ctx = _Ctx(img, np.zeros(img.shape, bool), np.array([2.5, 1.0, 1.0]), False, -15.0)
        on_vein = _Fit(v_c, np.full(_N_RAYS, 4.5), 4.5, 1.0, 40.0)
        found = artery_in_front(ctx, 0, on_vein, side)
        if expect:
            assert found is not None
            assert np.hypot(*(found.centre_mm - a_c)) <= 1.0
            assert found.radius_mm == pytest.approx(4.0, abs=1.0)
            monkeypatch.setattr(vessels_mod, "ARTERY_IN_FRONT_GAP_MM", 3.0)
            assert artery_in_front(ctx, 0, on_vein, side) is None
            monkeypatch.setattr(vessels_mod, "ARTERY_IN_FRONT_GAP_MM", 5.0)
        else:
            assert found is None


def test_reseed_candidates_are_the_interior_peaks_near_the_prediction_best_first():
    """Round 11: a large blob (radius 10 mm, its depth capped at the 4.5-mm prior, plateau 4.5 mm
    from the prediction: score 4.5 - 2.25) and a tube (radius 4.5 mm, centre 7.5 mm away) on one
    slice. Best first: the blob's plateau point nearest the prediction, then the tube's deepest point
    within the 6.5-mm reach; nothing outside the reach, nothing twice."""
    from vascalc.anatomy.builtin.vessels import reseed_candidates
    yy, xx = np.mgrid[0:60, 0:90] * 1.5
    inside = (np.hypot(yy - 45.0, xx - 35.0) <= 10.0) | (np.hypot(yy - 45.0, xx - 52.5) <= 4.5)
    pred = np.array([45.0, 45.0])
    pts = reseed_candidates(inside, (1.5, 1.5), pred, 4.5, 6.5, 4)
    assert len(pts) == 2
    # blob: plateau (depth >= 4.5) ends 5.5 mm right of its centre on the 1.5-mm grid: x = 39 or 40.5
    assert abs(pts[0][0] - 45.0) <= 1.5 and 39.0 <= pts[0][1] <= 40.5
    # tube: within the reach (x <= 51.5) and inside the tube, on its axis row
    assert pts[1][0] == 45.0 and 48.0 <= pts[1][1] <= 51.0
    assert np.all(np.hypot(*(pts - pred).T) <= 6.5)
    assert reseed_candidates(inside, (1.5, 1.5), pred, 4.5, 6.5, 0).shape == (0, 2)
    assert reseed_candidates(inside, (1.5, 1.5), pred, 4.5, 6.5, 1).shape == (1, 2)


def _buried_tube_beside_a_blob_ctx() -> tuple[_Ctx, np.ndarray]:
    """A straight tube (radius 4.5 mm at (45, 45) mm) on slices 25–39, buried in a muscle block on
    15–24 and seen again below it 7.5 mm laterally (x 52.5), with a larger blob (radius 10 mm,
    centre x 35) between it and the held prediction: the deepest point near that prediction is in
    the blob (legs non-contrast dev seed 2 left femoral, round 11)."""
    nz = 40
    img = np.full((nz, 60, 90), -100.0, np.float32)
    yy, xx = np.mgrid[0:60, 0:90] * 1.5
    centres = np.zeros((nz, 2))
    for z in range(nz):
        centres[z] = (45.0, 45.0 if z >= 15 else 52.5)
        img[z][np.hypot(yy - centres[z][0], xx - centres[z][1]) <= 4.5] = 40.0
    img[:15][:, np.hypot(yy - 45.0, xx - 35.0) <= 10.0] = 45.0
    img[15:25, 5:55, 5:85] = 45.0
    return _Ctx(img, np.zeros(img.shape, bool), np.array([2.5, 1.5, 1.5]), False, -15.0), centres


@pytest.mark.parametrize("extra_seeds", [4, 0])
def test_a_buried_artery_beside_a_larger_blob_is_found_from_a_further_seed(monkeypatch, extra_seeds):
    """Round 11: below the block the search's one seed lands in the blob (radius 10 mm: no clean
    tube of the track's calibre), so with no further seeds the track ends at the block. Trying the
    other interior peaks of the search disc, the tube is picked up on the first slice below the
    block (confirmed on the next) and followed on its centre; the block stays empty and uncertain."""
    monkeypatch.setattr(vessels_mod, "REACQUIRE_EXTRA_SEEDS", extra_seeds)
    _assert_track_across_the_block(*_buried_tube_beside_a_blob_ctx(), picked_up=bool(extra_seeds))


# --- round 12: the wall of an oblique artery on CTA ----------------------------------------------------

def test_oblique_wall_is_the_axial_section_of_a_tilted_ring():
    """Known answers: no tilt → the wall on every ray; 45° along +x → w√2 along x (ray 0), w along y
    (ray 8); any tilt: lumen section + oblique wall = the outer wall's section (both ellipses
    stretched by 1/cos θ along the tilt); the tilt is capped at 60° (2 × w)."""
    w = 1.5
    assert np.allclose(oblique_wall_mm(w, (0.0, 0.0)), w)
    ring = oblique_wall_mm(w, (0.0, 1.0))
    assert ring[0] == pytest.approx(w * np.sqrt(2.0)) and ring[16] == pytest.approx(w * np.sqrt(2.0))
    assert ring[8] == pytest.approx(w) and ring[24] == pytest.approx(w)
    assert ring[4] == pytest.approx(w / np.sqrt(0.5 * 0.5 + 0.5))  # 45° from the tilt
    rng = np.random.default_rng(0)
    for _ in range(5):
        theta, phi, r = rng.uniform(0.1, 0.9), rng.uniform(0, 2 * np.pi), rng.uniform(3.0, 8.0)
        tilt = np.tan(theta) * np.array([np.sin(phi), np.cos(phi)])  # (y, x), like _UNIT
        cos_a = _UNIT @ np.array([np.sin(phi), np.cos(phi)])
        section = lambda radius: radius / np.sqrt(cos_a ** 2 * np.cos(theta) ** 2 + 1 - cos_a ** 2)  # noqa: E731
        assert np.allclose(section(r) + oblique_wall_mm(w, tilt), section(r + w))
    assert oblique_wall_mm(w, (0.0, 10.0)).max() == pytest.approx(2.0 * w)


def test_track_tilt_is_the_centres_drift_per_mm_of_z():
    """Centres moving 1 mm in x per 2.5-mm slice: tilt (0, 0.4) in the middle and at the ends (one
    side only); a lone slice has none."""
    fits = {z: _Fit(np.array([20.0, 10.0 + z]), np.full(_N_RAYS, 5.0), 5.0, 1.0, 300.0) for z in range(5)}
    for z in (0, 2, 4):
        assert track_tilt_yx(fits, z, 2.5) == pytest.approx([0.0, 0.4])
    assert np.array_equal(track_tilt_yx({7: fits[0]}, 7, 2.5), [0.0, 0.0])


def test_cta_iliac_outline_takes_the_oblique_wall(monkeypatch):
    """Round 12 (dev contrast seed 2, bench grid): with one wall on every ray the common and
    external iliacs, which cross the axial plane at 35–40°, were drawn 5–10 voxels a slice short
    (iliac Dice 0.940 / 0.931); with the wall as cut by the axial plane 0.961 / 0.959. The aorta
    (near vertical) does not move."""
    ph = make_vascular_phantom(2, lumen_hu=350.0, shape=(120, 256, 256), spacing_mm=(2.5, 1.5, 1.5))
    truth = ph.totalseg_labels()
    scores = {}
    for on in (False, True):
        monkeypatch.setattr(vessels_mod, "OBLIQUE_WALL", on)
        res = segment_vessels(ph.volume)
        scores[on] = {n: dice(res.labels.mask(n), truth.mask(n))
                      for n in ("aorta", "iliac_artery_left", "iliac_artery_right")}
    assert scores[True]["aorta"] == scores[False]["aorta"]
    for name in ("iliac_artery_left", "iliac_artery_right"):
        assert scores[False][name] < 0.945 and scores[True][name] >= 0.955, (name, scores)


# --- round 13: the aorta's calibre --------------------------------------------------------------

def _wrapped_tube_ctx(n_slices: int = 24, wrap_from: int = 8) -> tuple[_Ctx, np.ndarray, float]:
    """A 12-mm soft-tissue tube in fat, 1.5-mm pixels; from slice ``wrap_from`` up, a lobulated layer
    of soft tissue (half to full thickness around it) lies against its front and sides (210°; the back
    150° stays in fat, as the aorta's back on the spine) with no fat plane between them, 4, 8, then
    12 mm thick — a mass merging the way the dev phantom's did (non-contrast seed 6, round 13)."""
    sp = np.array([2.5, 1.5, 1.5])
    yy, xx = np.mgrid[0:120, 0:120] * 1.5
    centre, radius = np.array([90.0, 90.0]), 12.0
    d = np.hypot(yy - centre[0], xx - centre[1])
    angle = np.mod(np.arctan2(yy - centre[0], xx - centre[1]), 2 * np.pi)  # 0 = +x, π/2 = +y (back)
    back = (angle > np.pi / 2 - 5 * np.pi / 12) & (angle < np.pi / 2 + 5 * np.pi / 12)
    img = np.full((n_slices, 120, 120), -100.0, np.float32)
    img[:, d <= radius] = 40.0
    for z in range(wrap_from, n_slices):
        thick = min(4.0 * (1 + z - wrap_from), 12.0) * (0.5 + 0.5 * np.abs(np.sin(2.5 * angle)))
        img[z][(d > radius) & (d <= radius + thick) & ~back] = 30.0
    return _Ctx(img, np.zeros(img.shape, bool), sp, False, -15.0), centre, radius


def test_needs_calibre_hold_is_a_wide_fit_that_is_not_round():
    """Known answers (gate 0.2, ± 15 %): 15 mm on a 12-mm calibre with a third of the rays on the old
    12-mm wall is a merge; 13.8 mm is within the gate; a round 19-mm tube (every ray at 18.5–19.5 mm)
    really widened; rays without an edge (NaN) do not agree."""
    eccentric = np.r_[np.full(11, 12.0), np.full(21, 16.5)]
    assert needs_calibre_hold(15.0, eccentric, 12.0, gate=0.2)
    assert not needs_calibre_hold(13.8, eccentric, 12.0, gate=0.2)
    assert not needs_calibre_hold(19.2, np.linspace(18.5, 19.5, _N_RAYS), 12.0, gate=0.2)
    open_rays = np.where(np.arange(_N_RAYS) < 5, np.nan, 19.0)
    assert needs_calibre_hold(19.0, open_rays, 12.0, gate=0.2)


def test_calibre_held_fit_places_the_tube_by_its_own_wall():
    """Where soft tissue (3–12 mm thick) wraps 210° of a 12-mm tube, the free fit is the merged outline
    (> 16 mm, not round); held at the calibre, the 150° of wall left (≈ 40 % of the rays) place the
    tube on its centre (± 0.3 mm), started 2 mm off. A round 20-mm tube ends no ray near a 12-mm
    calibre: None."""
    ctx, centre, radius = _wrapped_tube_ctx()
    free = vessels_mod._fit_tube(ctx, 20, centre, radius)
    rays = vessels_mod._cast_rays(ctx, 20, free.centre_mm, 2.0 * free.radius_mm + 4.0)
    assert free.radius_mm > 1.35 * radius and needs_calibre_hold(free.radius_mm, rays, radius, gate=0.2)
    held = calibre_held_fit(ctx, 20, centre + np.array([-1.2, 1.6]), radius)
    assert held is not None and held.radius_mm == pytest.approx(radius, abs=0.5)
    assert np.hypot(*(held.centre_mm - centre)) <= 0.3
    assert 0.35 <= held.hit_fraction <= 0.5
    yy, xx = np.mgrid[0:120, 0:120] * 1.5
    wide = np.where(np.hypot(yy - centre[0], xx - centre[1]) <= 20.0, 40.0, -100.0).astype(np.float32)[None]
    wide_ctx = _Ctx(wide, np.zeros(wide.shape, bool), ctx.spacing, False, -15.0)
    assert calibre_held_fit(wide_ctx, 0, centre, radius) is None


@pytest.mark.parametrize("gate", [None, 0.2])
def test_aorta_track_keeps_its_calibre_where_a_mass_wraps_it(gate):
    """The aorta tracker up the tube, wrapped from slice 8 (the wrap 4, 8, then 12 mm thick): without
    the gate the merged outline is taken on every wrapped slice (the previous slice's tolerance,
    0.35 r + 1.5 mm, lets each step in) and the centre walks ≈ 6 mm into the mass; with it the track
    takes one merged slice (8: below the gate), then the tube at its calibre — 11.8 mm ± 0.3 on its
    centre ± 0.3 mm from slice 10 on. A merge slower than the gate (≈ 20 % over the last 8 slices) is
    followed like a real widening (docs/segmentation.md, round 13)."""
    ctx, centre, radius = _wrapped_tube_ctx()
    seed = vessels_mod._fit_tube(ctx, 2, centre, radius)
    t = _Tracker(ctx, 2, seed, +1, r_range_mm=(5.0, 22.0), max_shift_mm=4.25, max_gap_mm=15.0, calibre_gate=gate)
    while t.active():
        t.step()
    fits, uncertain, _ = t.result()
    assert sorted(fits) == list(range(3, 24)) and not uncertain
    late = [fits[z] for z in range(10, 24)]
    if gate is None:
        assert all(f.radius_mm > 1.4 * radius and np.hypot(*(f.centre_mm - centre)) > 5.0 for f in late)
    else:
        assert all(abs(f.radius_mm - seed.radius_mm) <= 0.3 for f in late)
        assert all(np.hypot(*(f.centre_mm - centre)) <= 0.3 for f in late)


def test_dev_phantom_aorta_is_not_led_onto_the_mass_in_front_of_it(monkeypatch):
    """Round 13 (dev non-contrast seed 6, bench grid): from z ≈ −60 mm up a soft-tissue mass lies
    against the aorta's front with no fat plane; the free fit grew 12.4 → 19 mm within the
    slice-to-slice tolerance and walked 45 mm forward, leaving the top 5 slices empty (aorta Dice
    0.771). Held at its calibre the track stays on the aorta to the top of the scan (0.940)."""
    ph = make_vascular_phantom(6, lumen_hu=40.0, shape=(120, 256, 256), spacing_mm=(2.5, 1.5, 1.5))
    truth = ph.totalseg_labels().mask("aorta")
    scores, top = {}, {}
    for gate in (None, 0.2):
        monkeypatch.setattr(vessels_mod, "AORTA_CALIBRE_GATE", gate)
        aorta = segment_vessels(ph.volume).labels.mask("aorta")
        scores[gate] = dice(aorta, truth)
        top[gate] = [dice(aorta[z], truth[z]) for z in range(110, 120)]
    assert scores[None] < 0.80 and scores[0.2] >= 0.93, scores
    assert max(top[None]) < 0.3 and min(top[0.2]) >= 0.85, top


# --- round 14 (issue 6): a large aortic plaque on CTA is not bone ------------------------------------


def test_wall_plaque_mask_is_the_arc_on_the_lumen_not_the_cortex_it_joins():
    """An arc on the lumen's wall is a plaque; the same arc fused with a cortex block that reaches
    far beyond the band stays bone, and a block away from the lumen is never a plaque."""
    sp = (2.0, 1.0, 1.0)
    yy, xx = np.mgrid[0:60, 0:60]
    d = np.hypot(yy - 25, xx - 30)
    lumen = np.zeros((5, 60, 60), bool)
    lumen[:] = d <= 8
    arc = (d > 8) & (d <= 10) & (yy > 25)            # posterior half of a 2-mm wall
    block = (yy >= 42) & (yy < 56) & (np.abs(xx - 30) <= 12)
    dense = np.zeros_like(lumen)
    dense[:2] = arc | block                          # apart: 7 px of fat between arc and block
    dense[3:] = arc | block | ((yy >= 34) & (yy < 42) & (np.abs(xx - 30) <= 2))  # fused by a bridge
    plaque = wall_plaque_mask(dense, lumen, sp, band_mm=4.0)
    assert np.array_equal(plaque[:2], np.broadcast_to(arc, (2, 60, 60)))
    assert not plaque[2:].any()
    assert not wall_plaque_mask(dense, np.zeros_like(lumen), sp, band_mm=4.0).any()


def test_contrast_lumen_mask_takes_the_whole_lumen_of_a_shrunk_fit_and_no_marrow():
    """A 12-mm lumen (350 HU) whose fit shrank to 9 mm and moved 4 mm forward on the middle slice
    (its rays stopped on a false bone): the mask is the whole lumen disc on every slice, and
    none of the marrow (250 HU, above the half-lumen level) behind a 2-mm cortex 3 mm away."""
    sp = (2.5, 1.0, 1.0)
    yy, xx = np.mgrid[0:80, 0:80].astype(float)
    d = np.hypot(yy - 35, xx - 40)
    dv = np.hypot(yy - 70, xx - 40)
    sl = np.full((80, 80), 40.0)
    sl[d <= 12] = 350.0
    sl[dv <= 18] = 1000.0
    sl[dv <= 16] = 250.0
    img = np.repeat(sl[None], 5, axis=0)
    track = {z: (np.array([35.0, 40.0]), 12.0, 350.0) for z in range(5)}
    track[2] = (np.array([31.0, 40.0]), 9.0, 350.0)
    lumen = contrast_lumen_mask(img, sp, track)
    assert np.array_equal(lumen, np.broadcast_to(d <= 12, img.shape))
    # a distant enhancing blob (the half-lumen level is 195 HU) within the margin but not
    # connected to the lumen is left out too
    img2 = img.copy()
    img2[:, 35, 55:57] = 300.0
    assert np.array_equal(contrast_lumen_mask(img2, sp, track), lumen)


def _abdomen_slab_slice(sp) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One 140 × 140 axial slice at pixel spacing ``sp[1:]`` (mm): air, a 190 × 200-mm soft-tissue body
    (40 HU) with a 90 × 100-mm fat core (−100 HU). Returns (Y, X, slice), Y/X in mm from the centre."""
    ny = nx = 140
    y = (np.arange(ny) - ny / 2) * sp[1]
    x = (np.arange(nx) - nx / 2) * sp[2]
    Y, X = np.meshgrid(y, x, indexing="ij")
    sl = np.full((ny, nx), -1000.0, np.float32)
    sl[(Y / 95) ** 2 + (X / 100) ** 2 <= 1] = 40.0
    sl[(Y / 45) ** 2 + (X / 50) ** 2 <= 1] = -100.0
    return Y, X, sl


def _cta_tube_with_plaque_by_a_vertebra(gap_mm: float, seed: int = 0):
    """CTA abdomen slab (48 slices of 2.5 mm, 1.5-mm pixels): a 12-mm aorta (350 HU, 2-mm wall)
    with a dense (900 HU) 180° posterior wall plaque over slices 18–29, ``gap_mm`` of fat in front
    of a vertebra-like block (2-mm cortex 1000 HU, marrow 190 HU)."""
    nz, sp = 48, (2.5, 1.5, 1.5)
    Y, X, sl = _abdomen_slab_slice(sp)
    ra, wall, cy = 12.0, 2.0, -12.0
    rv = np.hypot(Y - (cy + ra + wall + gap_mm + 18.0), X)
    sl[rv <= 18.0] = 1000.0
    sl[rv <= 16.0] = 190.0
    d = np.hypot(Y - cy, X)
    sl[d <= ra + wall] = 40.0
    sl[d <= ra] = 350.0
    hu = np.repeat(sl[None], nz, axis=0)
    plaque = np.zeros(hu.shape, bool)
    plaque[18:30] = (d > ra) & (d <= ra + wall) & (Y > cy)
    hu[plaque] = 900.0
    hu += np.random.default_rng(seed).normal(0.0, 8.0, hu.shape).astype(np.float32)
    block = np.broadcast_to(rv <= 18.0, hu.shape)
    grid = Grid((nz, *sl.shape), sp, (0.0, 0.0, 0.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    return Volume(hu, grid), plaque, block


def test_cta_plaque_beside_a_vertebra_stays_in_the_aorta_and_the_vertebra_never_enters(monkeypatch):
    """Issue 6 known answer: the 180° plaque anchored a false "bone" whose marrow was the lumen
    behind it, so the fit shrank and the bone removal cut the plaque out (0 % kept). With the
    first track's lumen and its wall plaques refused as bone, all of the plaque is in the aorta
    mask; the block is in no vessel mask either way."""
    vol, plaque, block = _cta_tube_with_plaque_by_a_vertebra(3.0)
    kept = {}
    for band in (None, 4.0):
        monkeypatch.setattr(vessels_mod, "AORTIC_PLAQUE_BAND_MM", band)
        res = segment_vessels(vol, contrast=True)
        kept[band] = float(res.labels.mask("aorta")[plaque].mean())
        assert not (res.labels.labels > 0)[block].any()
    assert kept[None] < 0.1 and kept[4.0] >= 0.99, kept


def test_cta_plaque_fused_with_the_vertebra_leaves_the_vertebra_out_of_the_aorta():
    """The same plaque touching the cortex (no fat between): plaque and cortex are one dense
    component reaching far beyond the wall band, so it stays bone: no block voxel in a vessel."""
    vol, plaque, block = _cta_tube_with_plaque_by_a_vertebra(0.0)
    res = segment_vessels(vol, contrast=True)
    assert res.labels.mask("aorta").sum() > 5000
    assert not (res.labels.labels > 0)[block].any()


def test_dev_cta_phantom_keeps_its_large_aortic_plaque():
    """Round 14 (dev contrast seed 8, bench grid): a large posterior aortic plaque was taken for
    cortex; 38 of the 96 voxels > 600 HU inside the true aorta were in the mask (aorta Dice 0.934).
    Now all 96 (Dice 0.972), and no vessel voxel on a true bone."""
    ph = make_vascular_phantom(8, lumen_hu=350.0, shape=(120, 256, 256), spacing_mm=(2.5, 1.5, 1.5))
    truth = ph.totalseg_labels().mask("aorta")
    res = segment_vessels(ph.volume)
    aorta = res.labels.mask("aorta")
    dense = (ph.volume.hu > 600) & truth
    assert dense.sum() >= 90
    assert (dense & aorta).sum() >= 0.95 * dense.sum()
    assert dice(aorta, truth) >= 0.965
    assert not (res.labels.labels > 0)[_bone_truth(ph)].any()


def _tube_on_muscle(r_true_mm: float) -> _Ctx:
    """Five identical 1-mm slices: a tube (40 HU) of radius ``r_true_mm`` centred at (40, 40) mm in
    fat (−100 HU), a muscle (50 HU) against its back and lateral side (120° of its wall, no fat
    plane), blurred by 1 px as the segmenter's working image is."""
    yy, xx = np.mgrid[0:80, 0:80] * 1.0
    sl = np.full((80, 80), -100.0)
    ang = np.degrees(np.arctan2(yy - 40.0, xx - 40.0)) % 360.0
    sl[(np.hypot(yy - 40.0, xx - 40.0) < 25.0) & (ang > 60.0) & (ang < 180.0)] = 50.0
    sl[np.hypot(yy - 40.0, xx - 40.0) <= r_true_mm] = 40.0
    img = np.stack([ndimage.gaussian_filter(sl, 1.0)] * 5)
    return _Ctx(img, np.zeros(img.shape, bool), np.array([2.5, 1.0, 1.0]), False, -15.0)


def test_refit_short_iliac_restores_the_calibre_of_an_artery_on_muscle():
    """Round 15: started 2.9 mm towards its fat side, the free fit of a 7-mm tube lying on muscle
    shrinks onto the fat-side arc (radius < 5 mm, centre still > 2 mm off); with clean 7-mm fits
    on the slices around it, it is refitted at 7 mm on the tube's centre (± 1 mm). A tube that
    really is 5 mm (a taper) is left alone: the 7-mm circle is not on its wall."""
    clean = {z: _Fit(np.array([40.0, 40.0]), np.full(_N_RAYS, 7.0), 7.0, 1.0, 40.0) for z in (0, 1, 3, 4)}
    ctx = _tube_on_muscle(7.0)
    short = _fit_tube(ctx, 2, np.array([38.0, 41.5]), 7.0)
    assert short.radius_mm < 5.0 and short.hit_fraction < 0.8
    assert np.hypot(*(short.centre_mm - 40.0)) > 2.0
    out = refit_short_iliac(ctx, {**clean, 2: short}, range(5), gate=0.15)
    assert out[2].radius_mm == pytest.approx(7.0, abs=0.1)
    assert np.hypot(*(out[2].centre_mm - 40.0)) < 1.0
    assert all(out[z] is clean[z] for z in clean)
    # switched off by the gate: a fit within 15 % of the calibre is kept as it is
    near = _Fit(short.centre_mm, np.full(_N_RAYS, 6.2), 6.2, 0.5, 40.0)
    assert refit_short_iliac(ctx, {**clean, 2: near}, range(5), gate=0.15)[2] is near
    # too few clean fits nearby: no calibre, nothing refitted
    assert refit_short_iliac(ctx, {0: clean[0], 1: clean[1], 2: short}, range(5), gate=0.15)[2] is short
    taper = _tube_on_muscle(5.0)
    fit5 = _fit_tube(taper, 2, np.array([40.0, 40.0]), 5.0)
    assert refit_short_iliac(taper, {**clean, 2: fit5}, range(5), gate=0.15)[2] is fit5


@pytest.mark.parametrize("check_mm", [15.0, None])
def test_guided_track_leaves_the_vein_the_path_ends_on(monkeypatch, check_mm):
    """Round 16: an artery (r = 4 mm) and its vein (r = 4.5 mm) in fat, touching, the vein behind-
    medial (centres 8 mm apart), 20 slices of 2.5 mm. The minimal path (guide) follows the artery on
    slices 18–12 and slides onto the vein on its last four (11–8, within 15 mm of its end); below it
    the tracker goes on free. With the check on the path's end the track is moved back onto the
    artery at slice 11 and stays on it to slice 0 (every centre within 1 mm of the artery's); with
    :data:`GUIDE_END_VEIN_CHECK_MM` = None (rounds 4–15) it follows the path onto the vein and, both
    tubes being clean, the off-path check (margin 0.2) never moves it back."""
    monkeypatch.setattr(vessels_mod, "GUIDE_END_VEIN_CHECK_MM", check_mm)
    side, nz = "right", 20
    img, a_c, v_c = _artery_and_vein_in_fat(nz, -1.0)
    ctx = _Ctx(img, np.zeros(img.shape, bool), np.array([2.5, 1.0, 1.0]), False, -15.0)
    guide = {z: (a_c if z >= 12 else v_c).copy() for z in range(8, nz - 1)}
    seed = _Fit(a_c.copy(), np.full(_N_RAYS, 4.0), 4.0, 1.0, 40.0)
    t = _Tracker(ctx, nz - 1, seed, -1, r_range_mm=(2.0, 14.0), max_shift_mm=6.5, max_gap_mm=12.0,
                 coast_mm=12.0, min_hits=0.3, r_cap_mm=6.0, guide=guide, side=side)
    while t.active():
        t.step()
    fits, _, _ = t.result()
    assert sorted(fits) == list(range(0, nz - 1))
    off_artery = {z: float(np.hypot(*(f.centre_mm - a_c))) for z, f in fits.items()}
    off_vein = {z: float(np.hypot(*(f.centre_mm - v_c))) for z, f in fits.items()}
    assert all(off_artery[z] <= 1.0 for z in range(12, nz - 1))
    if check_mm is None:
        assert t.swaps == []
        assert all(off_vein[z] <= 1.0 for z in range(0, 12))
    else:
        assert t.swaps == [11]
        assert all(off_artery[z] <= 1.0 for z in range(0, 12))


@pytest.mark.parametrize("not_a_step", [True, False])
def test_swap_onto_the_artery_is_not_taken_as_motion(monkeypatch, not_a_step):
    """Round 17: a straight artery (r = 4 mm) and its touching vein behind-medial (r = 4.5 mm,
    centres 8 mm apart), 2.5-mm slices; the artery is buried in a muscle slab on slices 18–11 and
    clean in fat below; the path (guide, slices 18–8) runs on the vein. The vein check on the path's
    last 15 mm moves the track onto the artery at slice 10, an 8-mm jump. The artery does not move,
    so the prediction for slice 9 must be its centre (within 0.5 mm), and the track stays on it to
    slice 0. With :data:`SWAP_NOT_A_STEP` False (rounds 4–16) the jump was taken as the tube's
    step and half of it carried on: the prediction lands ≈ 4 mm past the artery, away from the vein
    (legs non-contrast dev seed 6 left: the next fits went off into the muscle, femoral lost)."""
    monkeypatch.setattr(vessels_mod, "SWAP_NOT_A_STEP", not_a_step)
    side, nz = "right", 20
    img, a_c, v_c = _artery_and_vein_in_fat(nz, -1.0)
    img[11:, 18:36, 22:46] = 40.0  # the muscle slab over the artery's front and sides
    ctx = _Ctx(img, np.zeros(img.shape, bool), np.array([2.5, 1.0, 1.0]), False, -15.0)
    guide = {z: v_c.copy() for z in range(8, nz - 1)}
    seed = _Fit(v_c.copy(), np.full(_N_RAYS, 4.5), 4.5, 1.0, 40.0)
    t = _Tracker(ctx, nz - 1, seed, -1, r_range_mm=(2.0, 14.0), max_shift_mm=6.5, max_gap_mm=12.0,
                 coast_mm=12.0, min_hits=0.3, r_cap_mm=6.0, guide=guide, side=side)
    while t.z > 9:
        t.step()
    assert t.swaps == [10]
    assert float(np.hypot(*(t.fits[11].centre_mm - v_c))) <= 1.0
    assert float(np.hypot(*(t.fits[10].centre_mm - a_c))) <= 1.0
    assert 9 not in t.guide  # the rest of the path is dropped: slice 9's prediction is the tracker's
    pred = t.predicted()[0]
    if not_a_step:
        assert float(np.hypot(*(pred - a_c))) <= 0.5
        while t.active():
            t.step()
        fits, _, _ = t.result()
        assert all(float(np.hypot(*(fits[z].centre_mm - a_c))) <= 1.0 for z in range(0, 11))
    else:
        # half the jump (a_c − v_c, clipped at 6.5 mm per axis) carried on past the artery
        expected = a_c + 0.5 * np.clip(a_c - v_c, -6.5, 6.5)
        np.testing.assert_allclose(pred, expected, atol=0.5)
        assert float(np.hypot(*(pred - a_c))) >= 3.5


# --- round 17b (issue 6): acquisition-sweep failures -------------------------------------------------


def _track_of(pattern: str, z_start: int = 3) -> dict:
    """Caudal track from a pattern read upwards from ``z_start``: 'f' a fitted slice (hit fraction
    0.8), 'g' a slice bridged by interpolation (hit fraction 0, as the tracker writes it), '.' no fit."""
    return {z_start + k: _Fit(np.array([100.0, 100.0]), np.full(_N_RAYS, 10.0), 10.0,
                              0.8 if c == "f" else 0.0, 40.0)
            for k, c in enumerate(pattern) if c != "."}


@pytest.mark.parametrize("pattern, dz, kept_from", [
    ("ff" + "ggggg" + "f" * 20, 2.5, 3 + 7),    # seed 7 at 1.0 mm: 5 mm stub below a 12.5-mm gap: dropped
    ("fff" + "ggggg" + "f" * 20, 2.5, 3),       # 7.5 mm of tube is not a stub
    ("ff" + "g" + "f" * 20, 2.5, 3),            # a gap shorter than the stub: one tube, kept
    ("f" * 27, 2.5, 3),                         # no gap
    ("fffff" + "gggggg" + "f" * 20, 1.25, 3 + 11),  # 6.25 mm below 7.5 mm of gap (1.25-mm slices)
    ("ffffff" + "gggggg" + "f" * 20, 1.25, 3),      # 7.5 mm at 1.25 mm: kept
    ("ff" + "..." + "ggggg" + "f" * 20, 2.5, 3),    # slices missing (metal streaks): not this rule
])
def test_drop_stub_after_gap_by_hand(pattern, dz, kept_from):
    fits = _track_of(pattern)
    out = drop_stub_after_gap(fits, dz, min_mm=7.5)
    assert sorted(out) == [z for z in sorted(fits) if z >= kept_from]
    assert all(out[z] is fits[z] for z in out)


def test_one_mm_pixels_seed_7_bifurcation_is_not_followed_onto_the_fat_behind_it():
    """Acquisition sweep (docs/acquisition-sweep.md, "Still weak" 3): at 1.0-mm pixels seed 7's aorta
    track lost the tube for 12.5 mm below its end (slices 48–44), bridged the gap onto a 2-slice stub
    on the fat behind the iliacs (slices 43–42, 5 mm), and the bifurcation was searched below that:
    aorta 17.5 mm too long (slice 42 vs 49), both iliacs Dice 0. With the stub dropped the two iliacs
    are found below the track's real end (measured 0.950 / 0.885 / 0.901)."""
    ph = make_vascular_phantom(7, shape=(120, 384, 384), spacing_mm=(2.5, 1.0, 1.0), lumen_hu=40.0)
    truth = ph.totalseg_labels()
    out = segment_vessels(ph.volume).labels
    aorta_z = np.flatnonzero(out.mask("aorta").any(axis=(1, 2)))
    truth_z = np.flatnonzero(truth.mask("aorta").any(axis=(1, 2)))
    assert aorta_z.min() >= truth_z.min() - 1, (aorta_z.min(), truth_z.min())
    assert dice(out.mask("aorta"), truth.mask("aorta")) >= 0.94
    for side in ("left", "right"):
        name = f"iliac_artery_{side}"
        assert dice(out.mask(name), truth.mask(name)) >= 0.85, side


def test_enhanced_min_scales_with_a_short_scans_z_coverage():
    """150 cm³ on any scan of ≥ 60 mm (every dev and bench scan: unchanged), 2.5 cm³ per mm of z below."""
    assert enhanced_min_mm3(300.0) == 150_000.0
    assert enhanced_min_mm3(60.0) == 150_000.0
    assert enhanced_min_mm3(30.0) == pytest.approx(75_000.0)
    assert enhanced_min_mm3(7.5) == pytest.approx(18_750.0)


def _untagged_crop(volume: Volume, a: int, b: int) -> Volume:
    g = volume.grid
    origin = g.index_to_lps(np.array([[a, 0, 0]]))[0]
    grid = Grid(shape=(b - a,) + tuple(g.shape[1:]), spacing_mm=g.spacing_mm,
                origin_lps_mm=tuple(map(float, origin)), direction=g.direction)
    info = dataclasses.replace(volume.info, contrast_agent=None)
    return dataclasses.replace(volume, hu=np.ascontiguousarray(volume.hu[a:b]), grid=grid, info=info)


@pytest.mark.parametrize("lumen_hu", [350.0, 40.0])
def test_untagged_12_slice_cta_is_tracked_as_contrast_and_plain_ct_is_not(lumen_hu):
    """Acquisition sweep "Still weak" 1: a 30-mm CTA crop without its contrast tag (every NIfTI) held
    106 cm³ of enhanced tissue, below the absolute 150 cm³, so it was tracked as non-contrast and
    bowel became the "aorta" (Dice 0.007). Per mm of z it holds 3.5 cm³/mm (non-contrast crops of the
    dev phantoms ≤ 1.74): the CTA hypothesis is tried and the aorta found (0.980). The plain CT crop
    of the same anatomy stays non-contrast (0.968, as before)."""
    ph = make_vascular_phantom(4, shape=(120, 256, 256), spacing_mm=(2.5, 1.5, 1.5), lumen_hu=lumen_hu)
    out = segment_vessels(_untagged_crop(ph.volume, 72, 84))
    truth = ph.totalseg_labels().mask("aorta")[72:84]
    assert out.contrast_detected == (lumen_hu > 120.0)
    assert dice(out.labels.mask("aorta"), truth) >= 0.95


# --- round 18 (issue 6): a thin iliac seed on a correct path -------------------------------------


def _guided_track_from_thin_seed(nz: int, tube_radius_mm: float, seed_offset_mm: np.ndarray) -> _Tracker:
    """A straight tube of ``tube_radius_mm`` (40 HU) in fat, centred at (30, 30) mm on 1-mm pixels and
    2.5-mm slices, tracked caudally along a guide on its centre from a 2.3-mm seed (0.4 of the rays)
    placed ``seed_offset_mm`` (y, x) off the centre; returns the finished tracker."""
    img = np.full((nz, 60, 60), -100.0, np.float32)
    yy, xx = np.mgrid[0:60, 0:60] * 1.0
    centre = np.array([30.0, 30.0])
    img[:, np.hypot(yy - centre[0], xx - centre[1]) <= tube_radius_mm] = 40.0
    ctx = _Ctx(img, np.zeros(img.shape, bool), np.array([2.5, 1.0, 1.0]), False, -15.0)
    seed = _Fit(centre + seed_offset_mm, np.full(_N_RAYS, 2.3), 2.3, 0.4, 40.0)
    t = _Tracker(ctx, nz - 1, seed, -1, r_range_mm=(2.0, 14.0), max_shift_mm=6.5, max_gap_mm=50.0,
                 coast_mm=12.0, min_hits=0.3, r_cap_mm=7.5, guide={z: centre.copy() for z in range(nz - 1)},
                 side="right")
    while t.active():
        t.step()
    return t


@pytest.mark.parametrize("floor_mm", [4.0, None])
def test_guided_track_from_a_thin_seed_takes_the_tube_on_its_path(monkeypatch, floor_mm):
    """Round 18: a seed taken from the crotch of a split blob can be 2.3 mm thin (0.9-mm pixels,
    seed 4 right). The first guided fit was held to that radius (|r − 2.3| ≤ 0.35·2.3 + 1.5 = 2.3 mm),
    so a 6-mm tube exactly on the path was refused on every slice and the iliac was lost. While the
    track holds only its seed, the reference radius is at least :data:`GUIDED_SEED_MIN_RADIUS_MM`
    (4 mm: |6 − 4| = 2 ≤ 0.35·4 + 1.5 = 2.9); after that the track's own fits are the reference."""
    monkeypatch.setattr(vessels_mod, "GUIDED_SEED_MIN_RADIUS_MM", floor_mm)
    nz, centre = 16, np.array([30.0, 30.0])
    fits, uncertain, _ = _guided_track_from_thin_seed(nz, 6.0, np.array([0.0, 3.0])).result()
    if floor_mm is None:
        assert fits == {} and sorted(uncertain) == list(range(nz - 1))
        return
    assert sorted(fits) == list(range(nz - 1)) and uncertain == []
    for f in fits.values():
        assert float(np.hypot(*(f.centre_mm - centre))) <= 0.5
        assert f.radius_mm == pytest.approx(6.0, abs=0.5)


def test_guided_track_seed_floor_does_not_admit_a_blob_far_wider_than_an_iliac():
    """The floor widens the first slice's tolerance only so far: from a 2.3-mm seed, a 7.3-mm tube
    (|7.3 − 4| = 3.3 > 2.9) is still refused on every slice — the cap (7.5 mm) lets it through as a
    radius, the continuity check does not."""
    assert _guided_track_from_thin_seed(6, 7.3, np.zeros(2)).result()[0] == {}



# --- round 24 (issue 6): the floor holds until the track's first clean fit ------------------------


def _guided_fit_after_a_weak_fit(monkeypatch, *, until_clean: bool, tube_radius_mm: float, seed_radius_mm: float,
                                 weak_radius_mm: float, weak_hits: float) -> "_Fit | None":
    """A straight ``tube_radius_mm`` tube (40 HU in fat, 1-mm pixels, 2.5-mm slices) centred on the
    guide; a guided track from a ``seed_radius_mm`` seed whose one fit so far (the slice above) is
    ``weak_radius_mm`` at ``weak_hits`` of the rays. Returns the guided fit on the next slice."""
    monkeypatch.setattr(vessels_mod, "GUIDED_FLOOR_UNTIL_CLEAN", until_clean)
    img = np.full((4, 60, 60), -100.0, np.float32)
    yy, xx = np.mgrid[0:60, 0:60] * 1.0
    centre = np.array([30.0, 30.0])
    img[:, np.hypot(yy - centre[0], xx - centre[1]) <= tube_radius_mm] = 40.0
    ctx = _Ctx(img, np.zeros(img.shape, bool), np.array([2.5, 1.0, 1.0]), False, -15.0)
    seed = _Fit(centre.copy(), np.full(_N_RAYS, seed_radius_mm), seed_radius_mm, 0.4, 40.0)
    t = _Tracker(ctx, 3, seed, -1, r_range_mm=(2.0, 14.0), max_shift_mm=6.5, max_gap_mm=50.0, coast_mm=12.0,
                 min_hits=0.3, r_cap_mm=7.5, guide={z: centre.copy() for z in range(3)}, side="right")
    weak = _Fit(centre.copy(), np.full(_N_RAYS, weak_radius_mm), weak_radius_mm, weak_hits, 40.0)
    t.fits[2], t.prev = weak, weak
    return t._guided_fit(1, centre)


def test_guided_floor_holds_past_a_thin_weak_fit_until_a_clean_one(monkeypatch):
    """Round 24: after a 2.3-mm seed, a weak 2.8-mm fit (0.3 of the rays, dev non-contrast 15 left)
    was the reference, so the 6-mm artery on the path was refused (|6 − 2.8| = 3.2 > 0.35·2.8 + 1.5
    = 2.48 mm) on every slice. While no fit is clean the reference is max(2.8, seed 2.3, 4) = 4 mm
    (|6 − 4| = 2 ≤ 2.9). After a clean thin fit (0.9 of the rays) the track's own fit is the
    reference again, and the 6-mm tube is refused as before."""
    kw = dict(tube_radius_mm=6.0, seed_radius_mm=2.3, weak_radius_mm=2.8)
    assert _guided_fit_after_a_weak_fit(monkeypatch, until_clean=False, weak_hits=0.3, **kw) is None
    fit = _guided_fit_after_a_weak_fit(monkeypatch, until_clean=True, weak_hits=0.3, **kw)
    assert fit is not None and fit.radius_mm == pytest.approx(6.0, abs=0.5)
    assert float(np.hypot(*(fit.centre_mm - 30.0))) <= 0.5
    assert _guided_fit_after_a_weak_fit(monkeypatch, until_clean=True, weak_hits=0.9, **kw) is None


def test_guided_floor_until_clean_keeps_a_wide_seeds_radius(monkeypatch):
    """Round 24, the seed's term (dev screw 11 right: a 6.8-mm seed whose weak fits shrank to 3.5 mm,
    0.31 of the rays); here a 7.5-mm seed and a weak 3.5-mm fit. The 7-mm artery below is refused against 3.5 mm (|7 − 3.5| = 3.5 > 2.73) and
    would be against the 4-mm floor alone (3.0 > 2.9); against the seed's 7.5 mm (|7 − 7.5| ≤ 4.1)
    it is taken."""
    kw = dict(tube_radius_mm=7.0, seed_radius_mm=7.5, weak_radius_mm=3.5, weak_hits=0.31)
    assert _guided_fit_after_a_weak_fit(monkeypatch, until_clean=False, **kw) is None
    fit = _guided_fit_after_a_weak_fit(monkeypatch, until_clean=True, **kw)
    assert fit is not None and fit.radius_mm == pytest.approx(7.0, abs=0.5)


def test_grow_into_wall_calcium_by_hand():
    """A 4-mm disc artery (label 2, 1-mm pixels, reach 3 mm). Joined: a 300-HU arc on its posterior
    outline with a 2-pixel spur (all 5 voxels within 3 mm), and a calcified voxel drawn as vein
    (label 11). Left out: a spur on its anterior side reaching 5 mm out (3 of 5 voxels within
    3 mm < 0.8: the rim of something larger), a 300-HU pixel 2 mm off that does not touch it, a
    touching 150-HU voxel (peak below 200 HU) and a touching 120-HU voxel (below 130 HU)."""
    yy, xx = np.mgrid[0:21, 0:21]
    disc = np.hypot(yy - 10, xx - 10) <= 4
    labels = np.zeros((3, 21, 21), np.uint8)
    labels[:] = np.where(disc, 2, 0)
    labels[:, 10, 5] = 11
    hu = np.full(labels.shape, 40.0)
    joined = [(15, 9), (15, 10), (15, 11), (16, 10), (17, 10), (10, 5)]
    for y, x in joined + [(5, 10), (4, 10), (3, 10), (2, 10), (1, 10), (12, 16)]:
        hu[:, y, x] = 300.0
    hu[:, 10, 15] = 150.0
    hu[:, 6, 11] = 120.0
    out = grow_into_wall_calcium(labels, hu, (2.5, 1.0, 1.0), [2, 3], reach_mm=3.0, free_ids=[11])
    want = labels.copy()
    for y, x in joined:
        want[:, y, x] = 2
    assert np.array_equal(out, want)
    assert np.array_equal(labels[:, 10, 5], np.full(3, 11))  # the input is not modified
    # the 150-HU voxel joins when the peak rule allows it; no artery: nothing grows
    low = grow_into_wall_calcium(labels, hu, (2.5, 1.0, 1.0), [2], reach_mm=3.0, min_peak_hu=130.0)
    assert low[1, 10, 15] == 2 and low[1, 6, 11] == 0
    no_art = np.where(labels == 2, 0, labels)
    assert np.array_equal(grow_into_wall_calcium(no_art, hu, (2.5, 1.0, 1.0), [2], reach_mm=3.0), no_art)


def _plain_tube_with_plaque_on_muscle(seed: int = 0):
    """Non-contrast slab (48 slices of 2.5 mm, 1.5-mm pixels): a 10-mm artery (40 HU) in fat whose
    posterior wall lies on a muscle block (no fat plane there), a vertebra-like block behind, and
    a 700-HU plaque from 1.5 mm inside to 2 mm outside the wall on its posterior-left side over
    slices 18–29 (issue 6, round 19: the iliac plaque of dev seed 3 lies where the wall meets muscle)."""
    nz, sp = 48, (2.5, 1.5, 1.5)
    Y, X, sl = _abdomen_slab_slice(sp)
    ra, cy = 10.0, -12.0
    d = np.hypot(Y - cy, X)
    sl[(Y > cy + 4) & (Y < cy + 30) & (np.abs(X) < 25)] = 40.0
    rv = np.hypot(Y - (cy + 48.0), X)
    sl[rv <= 18.0] = 1000.0
    sl[rv <= 16.0] = 190.0
    sl[d <= ra] = 40.0
    hu = np.repeat(sl[None], nz, axis=0)
    ang = np.arctan2(Y - cy, X)
    plaque = np.zeros(hu.shape, bool)
    plaque[18:30] = (d > ra - 1.5) & (d <= ra + 2.0) & (np.abs(ang - np.pi / 2 - 0.6) < 0.5)
    hu[plaque] = 700.0
    hu += np.random.default_rng(seed).normal(0.0, 8.0, hu.shape).astype(np.float32)
    grid = Grid((nz, *sl.shape), sp, (0.0, 0.0, 0.0), (1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0))
    return Volume(hu, grid), plaque, np.broadcast_to(rv <= 18.0, hu.shape)


def test_plain_ct_wall_plaque_on_muscle_is_inside_the_artery_mask(monkeypatch):
    """Known answer (round 19): without fat behind it the outline stops short of the plaque (72 of
    its 180 voxels in the mask before the change); with the wall calcium joined, all 180 are in,
    the mask grew by exactly the plaque voxels it lacked, and the vertebra is in no vessel."""
    vol, plaque, block = _plain_tube_with_plaque_on_muscle()
    masks = {}
    for reach in (None, 4.5):
        monkeypatch.setattr(vessels_mod, "WALL_CALCIUM_REACH_MM", reach)
        res = segment_vessels(vol, contrast=False)
        masks[reach] = res.labels.mask("aorta")
        assert not (res.labels.labels > 0)[block].any()
    assert masks[None][plaque].sum() < 0.5 * plaque.sum()
    assert masks[4.5][plaque].all()
    assert np.array_equal(masks[4.5], masks[None] | plaque)


# --- round 20: the plain-CT outline of an oblique iliac on muscle ---------------------------------

def _oblique_section_on_muscle(tilt_deg: float) -> tuple[np.ndarray, float, float]:
    """One axial slice (0.5-mm pixels) of a 5-mm 40-HU tube tilted by ``tilt_deg`` along +x: its section
    is the ellipse with semi-axes 5 / cos θ along x and 5 along y, in −100-HU fat except where it meets
    50-HU muscle, which fills everything beyond the section's ends along the tilt (|x| ≥ 3.5 mm outside
    the tube, as an external iliac lies on the psoas); blurred with σ = 1 mm. Returns (image, a, b)."""
    b = 5.0
    a = b / np.cos(np.deg2rad(tilt_deg))
    yy, xx = (np.mgrid[0:120, 0:120] * 0.5) - 30.0
    img = np.full((120, 120), -100.0)
    img[np.abs(xx) >= 3.5] = 50.0
    img[(xx / a) ** 2 + (yy / b) ** 2 <= 1.0] = 40.0
    return ndimage.gaussian_filter(img, 2.0), a, b


def test_half_max_outline_of_an_oblique_tube_on_muscle_is_its_elliptical_section():
    """Known answer (round 20): a 5-mm tube crossing the axial plane at 37° (tan θ = 0.75, the common
    iliac's tilt on the phantom) cut as the ellipse 6.25 × 5 mm; its rays along the tilt end on muscle.
    From the tracker's near-circle (5.3 mm on every ray) the rays in fat come out on the ellipse and,
    with the tilt, so do the rays on muscle (within 0.35 mm; outline area within 6 % of π·a·b, the
    half-maximum reading ≈ 0.15 mm short beside the blurred muscle); without it those rays keep the
    circle's 5.3 mm + the fat rays' correction, ≥ 0.6 mm short of the 6.25-mm ends, and the area is
    ≥ 15 % short. With no tilt the result is the round-2 outline exactly."""
    img, a, b = _oblique_section_on_muscle(np.degrees(np.arctan(0.75)))
    c = np.array([30.0, 30.0])
    given = np.full(_N_RAYS, 5.3)
    cos_a = _UNIT[:, 1]  # the tilt is along +x
    truth = b / np.sqrt(cos_a ** 2 * (b / a) ** 2 + 1.0 - cos_a ** 2)

    def area(r):  # the 32-ray star polygon's area, mm²
        return 0.5 * float(np.sum(r * np.roll(r, -1))) * np.sin(2 * np.pi / _N_RAYS)

    with_tilt = half_max_radii(img, (0.5, 0.5), c, given, 40.0, tilt_yx=(0.0, 0.75))
    plain = half_max_radii(img, (0.5, 0.5), c, given, 40.0)
    on_muscle = np.abs(cos_a) > 0.9
    in_fat = np.abs(cos_a) < 0.5
    np.testing.assert_allclose(with_tilt, truth, atol=0.35)
    np.testing.assert_allclose(plain[in_fat], truth[in_fat], atol=0.35)
    assert np.all(truth[on_muscle] - plain[on_muscle] >= 0.6)
    assert area(with_tilt) == pytest.approx(np.pi * a * b, rel=0.06)
    assert area(plain) < 0.85 * np.pi * a * b
    np.testing.assert_array_equal(half_max_radii(img, (0.5, 0.5), c, given, 40.0, tilt_yx=(0.0, 0.0)), plain)


def test_plain_ct_oblique_tube_outline_comes_out_at_its_section(monkeypatch):
    """End to end on the ray/outline code (round 20): a 5-mm tube drifting 0.75 mm in x per mm of z,
    rendered slice by slice as its exact section (6.25 × 5 mm ellipse) with muscle beyond its ends;
    fitted by ``_fit_tube`` on every slice, the tilt read off the fitted centres (``track_tilt_yx``,
    0.75 ± 0.1: the centres are placed by the rays in fat) and the half-maximum outline drawn: the drawn pixels match the analytic ellipse with
    Dice ≥ 0.94 on every slice (0.949–0.982; with the round-2 outline's rays on muscle 0.866–0.900)."""
    nz, sp, tilt = 9, (2.5, 0.5, 0.5), 0.75
    b = 5.0
    a = b * np.sqrt(1.0 + tilt ** 2)
    yy, xx = np.mgrid[0:160, 0:160] * 0.5
    img = np.empty((nz, 160, 160), np.float32)
    truth = np.zeros((nz, 160, 160), bool)
    for z in range(nz):
        cx = 30.0 + tilt * sp[0] * z
        sl = np.full((160, 160), -100.0)
        sl[np.abs(xx - cx) >= 3.5] = 50.0
        truth[z] = ((xx - cx) / a) ** 2 + ((yy - 40.0) / b) ** 2 <= 1.0
        sl[truth[z]] = 40.0
        img[z] = ndimage.gaussian_filter(sl, 2.0)
    ctx = _Ctx(img, np.zeros(img.shape, bool), np.asarray(sp), False, -15.0)
    fits = {z: _fit_tube(ctx, z, np.array([40.0, 30.0 + tilt * sp[0] * z]), 5.0) for z in range(nz)}
    assert all(f is not None for f in fits.values())
    scores = {}
    for on in (True, False):
        drawn = np.zeros(img.shape, np.uint8)
        for z, f in fits.items():
            t = track_tilt_yx(fits, z, sp[0]) if on else None
            if on:
                assert t == pytest.approx([0.0, tilt], abs=0.1)
            r = np.clip(half_max_radii(img[z], sp[1:], f.centre_mm, f.radii_mm, 40.0, tilt_yx=t),
                        f.radii_mm - 1.5, f.radii_mm + 1.5)
            vessels_mod._draw(drawn, 1, z, _Fit(f.centre_mm, r, float(r.mean()), 1.0, 40.0), 0.0, sp[1:],
                              np.zeros(2))
        scores[on] = [dice(drawn[z] == 1, truth[z]) for z in range(nz)]
    assert min(scores[True]) >= 0.94, scores
    assert max(scores[False]) <= 0.91, scores


def test_half_max_band_follows_the_oblique_section_along_the_tilt():
    """Known answer (round 26): the external iliac runs forward to the inguinal ligament at ≈ 48°
    (tan θ = 1.1), so its axial section is an ellipse 1.49 × longer along the tilt (5.4 × 8.03 mm here,
    in fat, blurred by 1 mm). The tracker's rays are a near-circle: on the phantom its rays along the tilt
    run past 1.3 × its radius and fall back to the radius (5.4 mm). The half-maximum rays find the
    ellipse (within 0.25 mm), but the fixed ±1.5-mm band about the tracker's rays cut them at 6.9 mm:
    ≥ 1.0 mm short of the 8.03-mm ends and the outline's area ≥ 9 % short (0.894 of π·a·b; the
    phantom's slices 4–10 were drawn 0.86–0.93 of the truth's area). With the band raised by the
    section's stretch, radius × (1/cos θ − 1), every ray lies within 0.3 mm of the ellipse and the area
    is within 5 %."""
    b, tilt = 5.4, 1.1
    a = b * np.sqrt(1.0 + tilt ** 2)
    yy, xx = np.mgrid[0:120, 0:120] * 0.5
    sl = np.full((120, 120), -100.0)
    sl[((xx - 30.0) / a) ** 2 + ((yy - 30.0) / b) ** 2 <= 1.0] = 40.0
    img = ndimage.gaussian_filter(sl, 2.0)
    c, given = np.array([30.0, 30.0]), np.full(_N_RAYS, b)
    cos_a = _UNIT[:, 1]  # the tilt is along +x
    truth = b / np.sqrt(cos_a ** 2 * (b / a) ** 2 + 1.0 - cos_a ** 2)

    def area(r):  # the 32-ray star polygon's area, mm²
        return 0.5 * float(np.sum(r * np.roll(r, -1))) * np.sin(2 * np.pi / _N_RAYS)

    found = half_max_radii(img, (0.5, 0.5), c, given, 40.0, tilt_yx=(0.0, tilt))
    np.testing.assert_allclose(found, truth, atol=0.25)
    fixed = np.clip(found, given - 1.5, given + 1.5)
    along = np.abs(cos_a) > 0.99
    assert np.all(truth[along] - fixed[along] >= 1.0)
    assert area(fixed) < 0.91 * np.pi * a * b
    lo, hi = half_max_band_mm(given, b, (0.0, tilt))
    band = np.clip(found, lo, hi)
    np.testing.assert_allclose(band, truth, atol=0.3)
    assert area(band) == pytest.approx(np.pi * a * b, rel=0.05)


def test_half_max_band_by_hand():
    """The band is ±1.5 mm about the tracker's rays with no tilt (or a zero one); with tan θ = 1 its upper
    end along the tilt is raised by radius × (√2 − 1), across the tilt not at all, and its lower end
    never moves."""
    radii = np.linspace(4.0, 6.0, _N_RAYS)
    for tilt in (None, (0.0, 0.0)):
        lo, hi = half_max_band_mm(radii, 5.0, tilt)
        np.testing.assert_allclose(lo, radii - 1.5)
        np.testing.assert_allclose(hi, radii + 1.5)
    lo, hi = half_max_band_mm(radii, 5.0, (1.0, 0.0))  # tilt along +y: rays 8 and 24
    np.testing.assert_allclose(lo, radii - 1.5)
    assert hi[8] - radii[8] == pytest.approx(1.5 + 5.0 * (np.sqrt(2.0) - 1.0))
    assert hi[24] - radii[24] == pytest.approx(1.5 + 5.0 * (np.sqrt(2.0) - 1.0))
    assert hi[0] - radii[0] == pytest.approx(1.5)
    assert hi[16] - radii[16] == pytest.approx(1.5)


def test_band_is_not_raised_on_a_weak_fit_or_near_the_iliac_seed_by_hand():
    """Round 26b: the oblique raise of the band (tan θ = 1 along +y: radius × (√2 − 1) = 2.07 mm on rays 8
    and 24 of a 5-mm fit) needs a fit with ≥ WEAK_HITS (0.6) of its rays on its wall whose tilt's
    reading (2 slices up and down) does not span the iliac's seed: a weak fit, or a slice 0–2 slices
    from the seed (above or below), keeps the fixed ±1.5-mm band; 3 slices away with 0.6 of the rays
    on the wall it is raised."""
    radii, tilt = np.full(_N_RAYS, 5.0), np.array([1.0, 0.0])
    raised = 1.5 + 5.0 * (np.sqrt(2.0) - 1.0)
    for hits, dz in ((0.59, 10), (0.0, -10), (1.0, 0), (1.0, 2), (1.0, -2), (0.9, 1)):
        assert band_tilt_yx(tilt, hits, dz) is None
        lo, hi = half_max_band_mm(radii, 5.0, band_tilt_yx(tilt, hits, dz))
        np.testing.assert_allclose(hi, radii + 1.5)
        np.testing.assert_allclose(lo, radii - 1.5)
    for hits, dz in ((0.6, 3), (1.0, -3), (0.8, 20)):
        lo, hi = half_max_band_mm(radii, 5.0, band_tilt_yx(tilt, hits, dz))
        assert hi[8] - radii[8] == pytest.approx(raised)
        assert hi[24] - radii[24] == pytest.approx(raised)
        assert hi[0] - radii[0] == pytest.approx(1.5)
        np.testing.assert_allclose(lo, radii - 1.5)


def _bent_tube_against_a_muscle(nz: int = 20, r_mm: float = 6.0, weak=range(6, 14), bend_mm: float = 7.0):
    """``nz`` slices of 2.5 mm, 1-mm pixels: a tube (40 HU, radius ``r_mm``) in fat (−100 HU) whose
    centre runs on 1.2 mm a slice in x and, over the ``weak`` slices, bends ``bend_mm`` forward (−y,
    half a sine) and back, as the iliac does at the pelvic brim; on those slices a muscle (50 HU)
    fills everything behind the tube's centre. Blurred by 1 px as the segmenter's working image is.
    Returns the context and the true centres (mm) per slice."""
    zs = np.arange(nz)
    bump = bend_mm * np.sin(np.pi * np.clip((zs - (weak[0] - 1)) / (len(weak) + 1.0), 0.0, 1.0))
    centres = {int(z): np.array([50.0 - bump[z], 30.0 + 1.2 * (nz - 1 - z)]) for z in zs}
    yy, xx = np.mgrid[0:100, 0:100] * 1.0
    img = np.empty((nz, 100, 100))
    for z, c in centres.items():
        sl = np.full((100, 100), -100.0)
        if z in weak:
            sl[yy > c[0]] = 50.0
        sl[np.hypot(yy - c[0], xx - c[1]) <= r_mm] = 40.0
        img[z] = ndimage.gaussian_filter(sl, 1.0)
    return _Ctx(img, np.zeros(img.shape, bool), np.array([2.5, 1.0, 1.0]), False, -15.0), centres


def test_reroute_weak_guided_fits_follows_the_bend_of_a_tube_against_a_muscle():
    """Round 22: a 6-mm tube bends 7 mm forward over slices 6–13, where a muscle lies against its
    back half; fitted where a path on its fat-faced front edge puts it (4 mm anterior), each of those
    fits sees the tube on 0.34–0.44 of its rays and is a 1.8-mm circle 3.9–4.3 mm off. The straight
    line between the clean fits on slices 5 and 14 cuts the bend 6.9 mm off at its top (round 21's
    bridge); the re-routed course follows it within 1.5 mm on every slice (0.7 mm measured), its
    radius interpolated between the clean fits, hit fraction 0 (not seen); the clean fits are the
    same objects. A weak fit inside the tube (its calibre disc all tissue) is left alone."""
    ctx, centres = _bent_tube_against_a_muscle()
    fits = {}
    for z, c in centres.items():
        fits[z] = _fit_tube(ctx, z, c + (np.array([-4.0, 0.0]) if 6 <= z <= 13 else 0.0), 6.0)
    chord_off = []
    for z in range(6, 14):
        assert fits[z].hit_fraction < 0.5 and fits[z].radius_mm < 2.5
        assert np.hypot(*(fits[z].centre_mm - centres[z])) > 3.5
        chord = centres[5] + (centres[14] - centres[5]) * (z - 5) / 9.0
        chord_off.append(np.hypot(*(chord - centres[z])))
    assert max(chord_off) > 6.5
    assert all(fits[z].hit_fraction >= 0.8 for z in (*range(6), *range(14, 20)))
    out = reroute_weak_guided_fits(ctx, fits, range(20), max_span_mm=50.0)
    for z in range(20):
        if 6 <= z <= 13:
            assert np.hypot(*(out[z].centre_mm - centres[z])) <= 1.5, z
            assert out[z].hit_fraction == 0.0
            w = (z - 5) / 9.0
            assert out[z].radius_mm == pytest.approx(fits[5].radius_mm + (fits[14].radius_mm - fits[5].radius_mm) * w)
        else:
            assert out[z] is fits[z]
    # a weak fit whose disc at the calibre is all tissue (here 3 mm behind the centre, in the tube and
    # the muscle merged with it) is inside the tube, not on its edge: left alone
    f9 = fits[9]
    inner = {**fits, 9: _Fit(centres[9] + np.array([3.0, 0.0]), np.full(_N_RAYS, 6.0), 6.0, 0.4, 40.0)}
    inside9 = (ctx.img[9] > -15.0)
    assert disc_tissue_fraction(inside9, (1.0, 1.0), inner[9].centre_mm, 5.6) == pytest.approx(1.0)
    assert disc_tissue_fraction(inside9, (1.0, 1.0), f9.centre_mm, 5.6) < 0.8
    inner_out = reroute_weak_guided_fits(ctx, inner, range(20), max_span_mm=50.0)
    assert inner_out[9] is inner[9] and inner_out[8] is not inner[8]
    # the rule's limits: clean fits 22.5 mm apart are beyond a 20-mm span, and a stretch off the
    # listed (path) slices is no stretch
    short = reroute_weak_guided_fits(ctx, fits, range(20), max_span_mm=20.0)
    assert all(short[z] is fits[z] for z in range(20))
    off_path = reroute_weak_guided_fits(ctx, fits, [*range(6), *range(14, 20)], max_span_mm=50.0)
    assert all(off_path[z] is fits[z] for z in range(20))


def test_reroute_weak_guided_fits_keeps_a_fit_the_course_would_move_past_one_calibre():
    """Round 22: with the lower clean fit moved 12 mm onto a neighbour (a clean fit on the vein, dev
    non-contrast seed 11 left), the re-routed course near it lies more than one calibre (5.6 mm) from
    the weak fits there, and those are left as they were rather than pulled onto the neighbour."""
    ctx, centres = _bent_tube_against_a_muscle()
    fits = {z: _fit_tube(ctx, z, c + (np.array([-4.0, 0.0]) if 6 <= z <= 13 else 0.0), 6.0)
            for z, c in centres.items()}
    f5 = fits[5]
    fits[5] = _Fit(f5.centre_mm + np.array([12.0, 0.0]), f5.radii_mm, f5.radius_mm, 1.0, f5.inside_hu)
    out = reroute_weak_guided_fits(ctx, fits, range(20), max_span_mm=50.0)
    calibre = 0.5 * (fits[5].radius_mm + fits[14].radius_mm)
    moved = [z for z in range(6, 14) if out[z] is not fits[z]]
    kept = [z for z in range(6, 14) if out[z] is fits[z]]
    assert kept and 6 in kept  # the slice next to the displaced anchor
    for z in moved:
        assert np.hypot(*(out[z].centre_mm - fits[z].centre_mm)) <= calibre


def test_pinned_tube_path_is_pinned_at_both_ends_and_stays_in_its_corridor():
    """Round 22: a straight 5-mm tube in fat between the pins is followed to a fine pixel (0.5 mm).
    Where it is missing on the middle five slices and a tube of tissue runs 15 mm beside the straight
    line there instead, a 20-mm corridor lets the course go over to it (≥ 12 mm off the line), and a
    5-mm corridor keeps it within 5 mm of the line; both stay pinned at the ends."""
    n = 11
    yy, xx = np.mgrid[0:60, 0:60]
    start, end = np.array([40.0, 10.0]), np.array([40.0, 30.0])
    line = start + (end - start) * np.linspace(0, 1, n)[:, None]
    straight = np.stack([np.hypot(yy - 40, xx - c[1]) <= 5 for c in line])
    path = pinned_tube_path(straight, (1.0, 1.0), start, end, radius_mm=5.0, corridor_mm=5.0, max_step_mm=6.0)
    assert np.abs(path - line).max() <= 0.5
    side = straight.copy()
    side[3:8] = np.stack([np.hypot(yy - 25, xx - c[1]) <= 5 for c in line[3:8]])
    for corridor, lo, hi in ((20.0, 12.0, 16.0), (5.0, 0.0, 5.0)):
        path = pinned_tube_path(side, (1.0, 1.0), start, end, radius_mm=5.0, corridor_mm=corridor, max_step_mm=6.0)
        assert path[0] == pytest.approx(start, abs=0.5) and path[-1] == pytest.approx(end, abs=0.5)
        off = np.hypot(*(path - line).T)[4:7]
        assert lo <= off.min() and off.max() <= hi, (corridor, off)


def test_disc_tissue_fraction_is_the_area_share_of_the_disc_on_the_mask():
    """Round 22: a disc of radius 10 mm centred on the edge of a half-plane mask is half on it; centred
    5 mm inside it, the share is the circular-segment area, 1/2 + (θ + sin θ cos θ)/π with
    sin θ = 0.5 (0.8045); off the mask, 0. The mask's pixels are 0.5 mm; the disc is sampled on 32
    rays, so the share is exact to one ray's sector (1/32 = 0.031)."""
    yy = np.mgrid[0:200, 0:200][0] * 0.5
    half = yy >= 50.5  # nearest pixel: the mask's edge lies at y = 50.25 mm, between pixel centres
    assert disc_tissue_fraction(half, (0.5, 0.5), np.array([50.27, 50.0]), 10.0) == pytest.approx(0.5, abs=0.032)
    theta = np.arcsin(0.5)
    segment = 0.5 + (theta + np.sin(theta) * np.cos(theta)) / np.pi
    assert disc_tissue_fraction(half, (0.5, 0.5), np.array([55.25, 50.0]), 10.0) == pytest.approx(segment, abs=0.032)
    assert disc_tissue_fraction(half, (0.5, 0.5), np.array([20.0, 50.0]), 10.0) == 0.0


def test_split_at_aortic_calibre_by_hand():
    """Round 27: the mean radius of the 3 lowest fitted slices above a split against 0.72 × the track's
    median radius. Dev screw seed 15's longest track ran into the right iliac: 5.8, 5.9, 5.7 mm above
    its split against a median of 12.3 mm (0.47) — not the bifurcation; a true split comes at the
    aorta's blob (9.9, 11.5, 11.7 mm, 0.89)."""
    aorta = {z: 12.3 for z in range(55, 120)}
    assert not split_at_aortic_calibre({**aorta, **{z: 5.8 for z in range(17, 45)}, 18: 5.8, 19: 5.9, 20: 5.7})
    assert split_at_aortic_calibre({**aorta, 49: 9.9, 50: 11.5, 51: 11.7})
    # the boundary: 0.72 × 12.3 = 8.856 mm
    assert split_at_aortic_calibre({**aorta, 50: 8.86, 51: 8.86, 52: 8.86})
    assert not split_at_aortic_calibre({**aorta, 50: 8.85, 51: 8.85, 52: 8.85})
    assert split_at_aortic_calibre({50: 5.0, 51: 12.0})  # too short to tell: trusted


def _aorta_track(z_lo: int, *, iliac_from: int | None = None, z_hi: int = 120) -> dict:
    """A straight aorta track (2.5-mm slices, r 12 mm at x = 195 mm) from ``z_hi`` down to ``z_lo``,
    running from ``iliac_from`` down onto an iliac 25 mm to the right at r 5.8 mm."""
    def fit(z):
        on_iliac = iliac_from is not None and z <= iliac_from
        c = np.array([205.0, 170.0 if on_iliac else 195.0])
        r = 5.8 if on_iliac else 12.0
        return _Fit(c, np.full(_N_RAYS, r), r, 1.0, 40.0)
    return {z: fit(z) for z in range(z_lo, z_hi)}


@pytest.mark.parametrize("switch", [False, True])
def test_choose_aorta_track_skips_a_longer_track_that_split_inside_an_iliac(monkeypatch, switch):
    """Round 27 (dev screw seed 15): five starts gave a track that crossed the streaks, ran down the right
    iliac from slice 45 and split at slice 16 (245 mm); one start gave the track that split at the true
    bifurcation, slice 48 (165 mm). The longest was kept (both iliacs Dice 0). The split of the long
    track came at 0.47 × its median radius, so the shorter track on the same tube wins; with the switch
    off the longest is kept. A longer track whose split came at the calibre is kept either way."""
    monkeypatch.setattr(vessels_mod, "AORTA_SPLIT_AT_CALIBRE", switch)
    seeds = {"left": (0, None), "right": (0, None)}

    def entry(fits, bif):
        fitted = {z: f.radius_mm for z, f in fits.items() if z > bif}
        return (len(fits) * 2.5, (fits, [], bif, seeds), split_at_aortic_calibre(fitted))
    long_ = entry(_aorta_track(17, iliac_from=45), 16)
    true_ = entry(_aorta_track(49), 48)
    assert not long_[2] and true_[2]
    assert choose_aorta_track([long_, true_], 2.5) is (true_ if switch else long_)
    # an untrusted longest track with nothing better on the same tube stays
    other = entry({z: _Fit(np.array([205.0, 120.0]), np.full(_N_RAYS, 12.0), 12.0, 1.0, 40.0)
                   for z in range(49, 120)}, 48)
    assert choose_aorta_track([long_, other], 2.5) is long_
    # a longer track that split at the calibre is kept
    deeper = entry(_aorta_track(45), 44)
    assert choose_aorta_track([true_, deeper], 2.5) is deeper
    assert choose_aorta_track([], 2.5) is None


def _artery_with_thinner_vein_behind(nz: int = 40, *, vein: bool = True, taper_below: int | None = None,
                                     thin_in_front: bool = False):
    """``nz`` slices of 2.5 mm, 1-mm pixels, fat (−100 HU): a right iliac artery (r = 6.5 mm, 40 HU)
    running 1.2 mm lateral per slice downwards (≈ 26° from the z axis) and, if ``vein``, its thinner vein
    (r = 5.2 mm) touching it behind and medial (centres 11.5 mm apart), as at dev non-contrast 13's
    pelvic brim (artery 7.2–7.6 mm, vein 5.8 mm). ``taper_below``: the artery narrows to 5.2 mm below
    that slice. ``thin_in_front``: a thin tube (r = 4.2 mm) 13 mm in front of the artery, on slices 8 and
    above (clear of the path's last 15 mm, where round 16's end check takes any clean tube in front).
    Returns (ctx, artery centres, vein centres) by slice, (y, x) mm."""
    ny, nx = 90, 110
    img = np.full((nz, ny, nx), -100.0, np.float32)
    yy, xx = np.mgrid[0:ny, 0:nx] * 1.0
    a = {z: np.array([35.0, 90.0 - 1.2 * (nz - 1 - z)]) for z in range(nz)}
    v = {z: a[z] + 11.5 * np.array([np.cos(0.6), np.sin(0.6)]) for z in range(nz)}  # right side: medial = +x
    for z in range(nz):
        r = 5.2 if taper_below is not None and z < taper_below else 6.5
        img[z][np.hypot(yy - a[z][0], xx - a[z][1]) <= r] = 40.0
        if vein:
            img[z][np.hypot(yy - v[z][0], xx - v[z][1]) <= 5.2] = 40.0
        if thin_in_front and z >= 8:
            img[z][np.hypot(yy - a[z][0] + 13.0, xx - a[z][1]) <= 4.2] = 40.0
    return _Ctx(img, np.zeros(img.shape, bool), np.array([2.5, 1.0, 1.0]), False, -15.0), a, v


def _guided_right_iliac(ctx, guide, a0: np.ndarray, nz: int) -> _Tracker:
    seed = _Fit(a0.copy(), np.full(_N_RAYS, 6.5), 6.5, 1.0, 40.0)
    t = _Tracker(ctx, nz - 1, seed, -1, r_range_mm=(2.0, 14.0), max_shift_mm=6.5, max_gap_mm=50.0,
                 coast_mm=12.0, min_hits=0.3, r_cap_mm=7.5, guide=guide, side="right")
    while t.active():
        t.step()
    return t


@pytest.mark.parametrize("check", [False, True])
def test_guided_track_leaves_a_thinner_vein_the_path_slid_onto_mid_course(monkeypatch, check):
    """Round 27 (dev non-contrast 13 right, 0.376): the minimal path follows the artery on slices 38–26 and
    slides onto the thinner vein behind it from slice 25 down to its end (0). Off, the vein is followed on
    slices 25–7 (every centre within 0.5 mm of the vein's; 5.0 mm against the artery's 6.4 mm) and only the
    end check (the path's last 15 mm) moves the track back at slice 6. On, the fit at 25 is narrower than
    0.85 × the clean calibre, the clean tube in front of it is taken there, the path below is found again
    from it and runs on the artery, and every centre lies within 0.5 mm of the artery's."""
    monkeypatch.setattr(vessels_mod, "GUIDE_NARROWING_VEIN_CHECK", check)
    nz = 40
    ctx, a, v = _artery_with_thinner_vein_behind(nz)
    guide = {z: (a[z] if z >= 26 else v[z]).copy() for z in range(nz - 1)}
    t = _guided_right_iliac(ctx, guide, a[nz - 1], nz)
    fits, _, _ = t.result()
    assert sorted(fits) == list(range(nz - 1))
    off_a = {z: float(np.hypot(*(f.centre_mm - a[z]))) for z, f in fits.items()}
    off_v = {z: float(np.hypot(*(f.centre_mm - v[z]))) for z, f in fits.items()}
    assert all(off_a[z] <= 0.5 for z in range(26, nz - 1))
    if check:
        assert t.swaps == [25]
        assert all(off_a[z] <= 0.5 for z in range(0, 26))
        # the path below the swap was found again, inside the artery (2.0–2.2 mm off its centre: the path
        # cost's disc leans towards the fat in front), 11.5 mm from the vein
        assert all(np.hypot(*(t.guide[z] - a[z])) <= 2.5 for z in range(0, 25))
    else:
        assert t.swaps == [6]
        assert all(off_v[z] <= 0.5 for z in range(7, 26))
        assert all(fits[z].radius_mm < 5.5 for z in range(7, 26))


@pytest.mark.parametrize("thin_in_front", [False, True])
def test_guided_track_keeps_an_artery_that_narrows(thin_in_front):
    """Round 27: the check fires on a narrowed fit, but an artery that narrows (6.5 → 5.2 mm below slice 25,
    common → external iliac) keeps its path: with fat in front there is no tube to take; with a clean thin
    tube 13 mm in front (4.2 mm, as dev screw 17 left's 4.2-mm neighbour 14 mm in front of its 5.6-mm fit)
    that tube is below 0.85 × the 6.5-mm calibre and is not taken (taking it cost screw 17 left 0.046).
    No swap, the path is kept, every centre on the artery."""
    nz = 40
    ctx, a, _ = _artery_with_thinner_vein_behind(nz, vein=False, taper_below=25, thin_in_front=thin_in_front)
    guide = {z: a[z].copy() for z in range(nz - 1)}
    t = _guided_right_iliac(ctx, guide, a[nz - 1], nz)
    fits, _, _ = t.result()
    assert t.swaps == []
    assert t.guide == guide
    assert all(np.hypot(*(fits[z].centre_mm - a[z])) <= 0.5 for z in range(nz - 1))
    assert fits[20].radius_mm == pytest.approx(5.2, abs=0.4)


def test_seed_on_aortic_plane_by_hand():
    """Round 28: the aorta's last clean fit at y 200.2 mm, r 11.2 mm (back wall 211.4 mm). Dev
    noncontrast seed 11's right seed at 45 (194.3, 179.7), r 7.4 (back wall 201.7 mm, 9.7 mm in front)
    moves back to y 204.0 (truth 204.1); a seed within its radius of the plane is left alone."""
    aorta = _Fit(np.array([200.2, 195.1]), np.full(_N_RAYS, 11.2), 11.2, 1.0, 40.0)
    seed = _Fit(np.array([194.3, 179.7]), np.full(_N_RAYS, 7.4), 7.4, 0.56, 35.0)
    moved = seed_on_aortic_plane(seed, aorta)
    assert moved.centre_mm == pytest.approx([204.0, 179.7])
    assert (moved.radius_mm, moved.hit_fraction, moved.inside_hu) == (7.4, 0.56, 35.0)
    near = _Fit(np.array([196.7, 206.8]), np.full(_N_RAYS, 7.4), 7.4, 0.5, 35.0)  # back wall 7.3 mm in front
    assert seed_on_aortic_plane(near, aorta) is near


@pytest.mark.parametrize("switch", [False, True])
def test_iliac_seeds_found_below_the_aorta_end_move_onto_its_plane(monkeypatch, switch):
    """Round 28 (dev seed 11): the aorta track (r 11.2 mm at y 200 mm) just ends at slice 10; the two
    tubes are found only at slice 6 (4 slices down: a neighbour merged with the iliacs above), both in
    front of the aorta (right / left seeds at y 194.3 / 196.0, r 7.4 / 6.2). With the switch they are moved
    back onto the aorta's back wall (211.2 mm): y 203.8 / 205.0; a split on the first slice below the end is kept
    as found."""
    monkeypatch.setattr(vessels_mod, "SEED_ON_AORTIC_PLANE", switch)
    ctx = _Ctx(np.full((31, 40, 40), -100.0), np.zeros((31, 40, 40), bool), np.array([2.5, 1.5, 1.5]), False, -15.0)
    fits = {z: _Fit(np.array([200.0, 195.0]), np.full(_N_RAYS, 11.2), 11.2, 1.0, 40.0) for z in range(10, 31)}
    found = {"left": _Fit(np.array([196.0, 206.8]), np.full(_N_RAYS, 6.2), 6.2, 0.4, 35.0),
             "right": _Fit(np.array([194.3, 179.7]), np.full(_N_RAYS, 7.4), 7.4, 0.6, 35.0)}
    split_at = {"z": 6}
    monkeypatch.setattr(vessels_mod, "_split", lambda c, z, *a, **k: dict(found) if z == split_at["z"] else None)
    bif, seeds = _bifurcation_by_radius(ctx, fits, 30)
    assert bif == 6 and {k: v[0] for k, v in seeds.items()} == {"left": 6, "right": 6}
    expected = {"left": 205.0, "right": 203.8} if switch else {"left": 196.0, "right": 194.3}
    for side in ("left", "right"):
        assert seeds[side][1].centre_mm == pytest.approx([expected[side], found[side].centre_mm[1]])
    split_at["z"] = 9
    bif, seeds = _bifurcation_by_radius(ctx, fits, 30)
    assert bif == 9 and seeds["right"][1].centre_mm == pytest.approx([194.3, 179.7])
