"""Model-free segmentation of the aorta, iliac and femoral arteries (and visceral origins) from CT.

The arteries are found as tubes, not as voxels. The aorta is seeded where a round soft-tissue
(or, on CTA, bright) disc with a non-tube ring sits in front of the spine, then followed slice by
slice: 32 rays are cast from the centre to the first fat / half-lumen / bone sample, the rays that
agree on one radius (the wall) get a circle fitted through them and the others (escaping through
an attached IVC, crus, branch or muscle) are ignored. Going down, the bifurcation is where the
track splits into two tubes, narrows to < 0.72 × the aortic radius (the first iliac slice then being
where the radius first fell below 0.85 ×: the partial-volume slices of the aorta's end), or keeps an aortic calibre but
swerves sideways away from the midline for ≥ 15 mm (an iliac touching its vein or the IVC with
no fat plane, on non-contrast CT: the aorta runs straight down its last centimetres, the common
iliacs part at ≈ 25–30°); when the streaks of a screw or stent hide the bifurcation, the two
iliacs are looked for again as two tubes on the first clear slices below (within 60 mm), the
streaked gap staying uncertain for the aorta and both iliacs. The two iliacs are then
followed down the pelvis and the thighs (radius capped at 7.5 mm: where an artery lies against
its vein or the psoas with no fat plane, the merged blob is capped and the capped disc kept where
it is most inside near the artery's own predicted course — the neighbour may be medial, posterior
or lateral). Iliac becomes femoral at the top of the pubic symphysis (:func:`pubic_symphysis_top`),
where TotalSegmentator's ``iliac_artery_*`` masks end (inferred from its reference masks,
docs/segmentation.md), or at the femoral heads' centre where the symphysis is not in the scan.

Below the bifurcation each iliac artery is first given a course by a minimal path
(:func:`slice_minimal_path`, dynamic programming over slices, one pixel per slice, steps ≤
2 mm + 1.5 × the slice spacing) through :func:`artery_path_cost` — a small disc of tissue with fat
around it and, above all, fat *in front* of it: in the pelvis the iliac veins lie behind / medial to
their arteries, so a vein's front touches its artery while the artery's front faces fat. The path
runs from the seed at the bifurcation to ≈ 20 mm above the femoral heads' centre, on a ≈ 1.5-mm
crop of its own side; the tracker then fits the tube on the path's centre of each slice (a global
course cannot drift into the vein over a few merged slices the way a greedy tracker does), and
where no tube is seen on the path nothing is drawn (the slice is uncertain). Measured
(docs/segmentation.md): real non-contrast iliacs 0.241 / 0.462 → 0.380 / 0.728 (left / right).
The psoas' fat-faced front edge looks like an artery to that cue; where the artery lies between
the psoas and its vein with soft tissue in front, the path ran along the edge. So a second course
is found with the psoas (a large muscle beside the vertebral body, followed down from the
bifurcation: :func:`follow_large_mass`) taken out of the tube cue, and of the two the one along
which the fitted tube's wall is seen on more rays wins (:func:`path_wall_support`). On
non-contrast CT the iliac/femoral outline is drawn at the half-maximum between the vessel and fat
(:func:`half_max_radii`), not at the tracker's −15-HU edge. Measured: real non-contrast iliacs
0.380 / 0.728 → 0.626 / 0.738; with the pubic-symphysis boundary 0.636 / 0.752, and with the
bifurcation at the taper's start 0.659 / 0.767 (aorta 0.914 → 0.922).

Below the end of the minimal path (groin, thigh; non-contrast) a greedy iliac/femoral track can
slide onto its touching vein; each fit there is checked for a same-calibre tube touching it in front
/ laterally (:func:`artery_in_front`: the veins lie behind / medial of their arteries) that shows its
wall on clearly more rays, and the track moves onto it. Measured (docs/segmentation.md, round 4):
knee-length non-contrast right femoral 0.000 → 0.559 (seed 0), 0.779 → 0.850 (held-out seed 3).
There the fit of an artery touching its vein also swells into the vein, so its drawn outline (not
its centre: the track is left alone) is held per ray to the calibre measured on the path's lowest
15 mm (:func:`path_calibre_mm`). Measured (round 6): real non-contrast iliacs 0.654 / 0.765 →
0.662 / 0.773; groin slices 16–25 → 13–15 voxels (reference 9–12).

Round 8 (docs/segmentation.md): the minimal path is kept in front of the thick lateral bone of its
side (femoral head, acetabulum, sacro-iliac joint: :func:`lateral_bone_front_px`), since the external
iliac passes in front of the hip joint to the groin; a path that settled on a small tube behind the
buried artery's forward turn used to end beside the femoral head. And the greedy track below the path
crosses up to :data:`ARTERY_MAX_GAP_MM` of slices where the artery is buried in muscle, on a
prediction held after :data:`ARTERY_COAST_MM`, picking the artery up again only as a clean tube of
the same calibre; the buried slices are left empty and uncertain.

Round 9: off the guide an artery's fit must also keep the track's calibre (the median radius of its
last :data:`CALIBRE_WINDOW` fits, ± :data:`REACQUIRE_RADIUS_TOLERANCE`; before the cap), else the
slice is a gap: a buried femoral was fitted as the muscle compartment around it, swelling a little
on each slice within the previous slice's tolerance, and the capped fit crept off the artery. Where
that band reaches the anatomical cap (an iliac merged with its vein) the cap alone bounds the fit.
And :func:`artery_in_front` takes a same-calibre tube up to :data:`ARTERY_IN_FRONT_GAP_MM` of fat
away from the fit (the femoral vein may run a few mm from its artery), not only a touching one.

Round 10: after a long gap a track that finds no clean tube on its held prediction looks again on
its course (:data:`COAST_ON_COURSE`: the least-squares slope of its last fitted centres, carried over
the whole gap), and takes a tube found there only when the next slice shows it again near it: a
femoral buried above the knee while it turns back to the popliteal had walked 8–12 mm off the held
prediction, out of the search, and the track ended.

Round 11: after a long gap, where the search's one seed (the deepest blob near the prediction) gives
no clean tube, the fit is also started from the other interior peaks of the search disc
(:data:`REACQUIRE_EXTRA_SEEDS`, :func:`reseed_candidates`), each taken only when the next slice shows
it again: a buried femoral seen again 6 mm from its held prediction, beside a larger muscle blob, had
never been tried and the track ended.

Round 12: on CTA the wall grown around an artery's lumen is the wall as the axial plane cuts it
(:data:`OBLIQUE_WALL`, :func:`oblique_wall_mm`, tilt from :func:`track_tilt_yx`): the iliacs cross the
plane at 35–40°, so their wall is ≈ 1/cos θ wider along the tilt; one wall on every ray drew them
5–10 voxels a slice short (bench contrast iliacs 0.924–0.942 → 0.947–0.961).

Round 13: the aorta's fit is held to the track's calibre where it swells into a neighbour
(:data:`AORTA_CALIBRE_GATE`, :func:`needs_calibre_hold`, :func:`calibre_held_fit`): against a soft-tissue
mass with no fat plane the free fit took the merged outline, growing within the slice-to-slice
tolerance, and walked into the mass (dev non-contrast seed 6: the top 5 slices lost, aorta 0.771 →
0.940; real non-contrast 0.922 → 0.928).

Round 17: the symphysis' rounded top (a partial-volume cap under the area test's 60 mm²) is followed up
over ≤ 5 mm (:func:`pubic_symphysis_top`, knee-length phantoms' boundary a slice nearer the truth); where
the longest aorta track found only one iliac at its end, another start's track of the same tube
(:func:`same_tube`) that found both wins (:data:`AORTA_PREFER_BOTH_ILIACS`: a track that ran on past the
bifurcation into a blob of aortic calibre); a move from the vein onto the artery in front is not taken
as the track's motion (:data:`SWAP_NOT_A_STEP`).

Round 18: a guided iliac track that holds only its seed compares its first fit with at least
:data:`GUIDED_SEED_MIN_RADIUS_MM` (a 2.3-mm seed from the crotch of a split blob refused every fit).

Veins (returned as ``inferior_vena_cava``, ``iliac_vena_left/right``; never scored): the IVC is
the tube 25–55 mm right of the aorta (nearer lies the right crus; on CTA it must enhance, > 60 HU),
seeded on the lowest 80 mm of the aorta and followed by its fat edge up the aorta and down to its
confluence; there it splits into the common iliac veins, or (no split seen) the confluence is
found like the bifurcation and the other iliac vein picked up beside it, or each vein is looked
for behind/inside its artery. Below the aorta the tubes are followed in lockstep (the joint
tracker, :func:`_track_pelvis`): each vein fit excludes the arteries' predicted discs, and each
artery fit excludes the veins' outlines just fitted on that slice, so no voxel is claimed twice
and an artery cannot slide into a vein that is being followed. Veins are kept one voxel (≥ 3 mm)
off bone. Measured (docs/segmentation.md): the IVC is found fairly well (Dice ≈ 0.5–0.85); the
iliac veins only sometimes.

Each slice of each vessel is a centre and a star-shaped outline in millimetres, drawn at the full
resolution of the scan at the end, so the search runs on an in-plane downsampled copy (≈ 2 mm),
and a 512 × 512 × 300 CT takes ≈ 6–13 s on two cores.

Contrast: a CTA hypothesis is tried when the scan is tagged with a contrast agent or holds
≥ 150 cm³ of homogeneous bright tissue outside the cortex-anchored skeleton (marrow of the femurs,
pelvis and sacrum alone exceeds that in a knee-length scan; a scan under 60 mm of z needs 2.5 cm³ per
mm of z instead); it is kept when the followed aorta's lumen median is
> 120 HU and even (SD < 40 HU, unlike marrow). Renal, celiac and SMA *origins* (≈ 12 mm) are
looked for on CTA only, as bright offshoots of the aortic wall; on non-contrast CT they are absent.

Masks are lumen + wall (the wall is where calcium sits, SCORING.md C): on non-contrast CT the
soft-tissue/fat edge *is* the outer wall; on CTA the bright-lumen edge is grown outwards by
:data:`WALL_MM`. On non-contrast CT, calcium the outline cut through (the wall on muscle has no
fat edge) is given back to its artery (:func:`grow_into_wall_calcium`, round 19).
Bone (given, or thresholded here) is removed from every vessel mask, with a
1.5-mm margin where voxels are finer than that, so calcium scoring never counts vertebra, pelvis
or femur. On CTA the thresholded skeleton refuses the lumen of the first aorta track and the dense
plaques on its wall (:func:`contrast_lumen_mask`, :func:`wall_plaque_mask`): a large aortic plaque
is not cortex, and the lumen beside it is not marrow (issue 6). Slices where the evidence is missing — the slices holding metal > 2000 HU and one slice
either side (the streaks lie in the reconstructed slices through the metal; a fixed 15 mm used to
blank the whole bifurcation around a pedicle screw), within 40 mm in-plane, or a track lost for
good — are left empty and listed in ``uncertain_slices``:
the segmenter does not invent a vessel there. Short gaps (≤ 15 mm aorta, ≤ 12 mm iliac) between
two good fits of a continuous tube are bridged by interpolation.

Orientation: any axis-aligned grid is handled by reading the array in a canonical frame
(axis 0 superior, axis 1 posterior, axis 2 patient-left, from :class:`Grid` ``direction``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, signal

from vascalc.errors import InputError
from vascalc.imaging import LabelMap, Volume

VESSEL_LABELS: dict[int, str] = {
    1: "aorta", 2: "iliac_artery_left", 3: "iliac_artery_right", 4: "femoral_artery_left",
    5: "femoral_artery_right", 6: "renal_artery_left", 7: "renal_artery_right", 8: "celiac_trunk",
    9: "superior_mesenteric_artery", 10: "inferior_vena_cava", 11: "iliac_vena_left", 12: "iliac_vena_right",
}
_ID = {n: i for i, n in VESSEL_LABELS.items()}

#: Metal: implants, stents, screws (HU; cortical bone stays below ≈ 1900).
METAL_HU = 2000.0
#: Streak reach of metal: slices beyond those holding metal (along z), and in-plane distance (mm).
#: None slices: the old fixed 15 mm along z.
METAL_REACH_SLICES: float | None = 1.0
METAL_REACH_MM = 40.0
#: An aorta track whose median centre lies further right of the body's midline than this is rejected (mm).
AORTA_MAX_RIGHT_MM = 10.0
#: Off the minimal path, check that an iliac/femoral track has not slid onto its vein (:func:`artery_in_front`).
ARTERY_IN_FRONT_CHECK = True
#: ... and moves onto the tube in front only when that shows its wall on this much larger a fraction of
#: the 32 rays (0.1 also moved two correct left femoral tracks onto a tube in front at the pubis).
SWAP_MARGIN = 0.2
#: How far apart (mm, wall to wall) the tube in front may lie from the fit (:func:`artery_in_front`):
#: a femoral vein runs beside its artery, touching or a few mm of fat apart (3 mm missed the phantoms'
#: femoral arteries 12–13 mm from their veins' centres, round 9).
ARTERY_IN_FRONT_GAP_MM = 5.0
#: The :func:`artery_in_front` check also on the iliac minimal path's last this many mm (above the
#: groin, where the vein comes up beside its artery): the tube in front is taken when it is clean
#: (≥ :data:`CLEAN_HITS` of its rays) and at least as clean as the path's fit, and the rest of the
#: path is dropped (the track goes on free, with the check). None: off the path only (rounds 4–15).
GUIDE_END_VEIN_CHECK_MM: float | None = 15.0
#: Round 27 (issue 6): the same check on any slice of the path where its fit is narrower than
#: (1 − :data:`GUIDED_CALIBRE_HOLD`) × the track's clean calibre (:meth:`_Tracker.clean_calibre_mm`): at the
#: pelvic brim the artery touches its vein behind it, and the path slid onto the thinner vein while the
#: artery ran on clean beside it (dev non-contrast 13 right: 7.2–7.6 mm, ≥ 0.88 of the rays, against the
#: vein's 5.8 mm). There the tube in front must itself be at least that fraction of the calibre, and
#: where it is taken the path below is found again from it (:func:`_iliac_guide`). False: the path's
#: last slices only.
GUIDE_NARROWING_VEIN_CHECK = True
#: Round 17: the jump of a track moved from the vein onto the artery in front (:func:`artery_in_front`)
#: is not taken as the tube's motion: that slice's step counts as zero in the velocity; False: the
#: jump was a step like any other (rounds 4–16).
SWAP_NOT_A_STEP = True
#: Rim (mm) of an iliac vein's fitted outline that its artery may still claim in the joint tracker.
VEIN_RIM_MM = 3.0
#: A contrast (CTA) hypothesis is tried only with this much homogeneous bright tissue (mm³) ...
ENHANCED_MIN_MM3 = 150_000.0
#: ... or, on a scan too short to hold that much (under 60 mm of z), this much per mm of z coverage
#: (mm³/mm = mm² of mean enhanced area per slice; :func:`enhanced_min_mm3`). Measured on 12-slice
#: (30-mm) crops of the dev phantoms: non-contrast ≤ 1.74 cm³/mm (knee marrow), CTA crops of the
#: upper abdomen (slices 72–119 of 120) ≥ 3.5 cm³/mm (round 17b). None: the absolute volume only.
ENHANCED_MIN_MM3_PER_MM: float | None = 2_500.0
#: Aortic lumen median above this means a contrast (CTA) scan (HU).
CONTRAST_LUMEN_HU = 120.0
#: Fat/soft-tissue edge: between fat (≈ −100 HU) and blood/wall (≈ 40 HU), nearer the wall so
#: that thin, partial-volume fat planes (−20 … 0 HU at 3 mm) still separate the aorta from the IVC.
FAT_EDGE_HU = -15.0
#: Wall grown outside the bright lumen on CTA (mm): aortic wall ≈ 2–3 mm, iliac/femoral ≈ 1.5 mm.
WALL_MM = {"aorta": 2.0, "iliac": 1.5, "femoral": 1.5, "branch": 1.2}
#: Follow each iliac artery along a minimal path (:func:`slice_minimal_path`) below the bifurcation.
USE_ILIAC_PATH = True
#: Also try an iliac course with the psoas' inside taken out of the tube cue (:func:`_iliac_guide`).
USE_PSOAS_HYPOTHESIS = True
#: Draw non-contrast iliac/femoral outlines at the half-maximum to the fat (:func:`half_max_radii`).
HALF_MAX_OUTLINE = True
#: On CTA, grow an oblique artery's lumen by its wall as cut by the axial plane (wider along the
#: artery's tilt: :func:`oblique_wall_mm`), not by the same wall on every ray (round 12).
OBLIQUE_WALL = True
#: Round 20 (issue 6): on non-contrast CT, an iliac/femoral ray that ends on a neighbour (no fat) takes the
#: oblique tube's elliptical section scaled to the rays in fat (:func:`half_max_radii`, ``tilt_yx``),
#: not the tracker's near-circle; False: the round-2 outline.
OBLIQUE_PLAIN_OUTLINE = True
#: Round 26 (issue 6): the ±1.5-mm band about the tracker's rays that holds that outline also follows the
#: oblique section: along the tilt its upper end is raised by the section's stretch
#: (:func:`half_max_band_mm`). False: the same band on every ray (rounds 2–25).
OBLIQUE_OUTLINE_BAND = True
#: Fat (HU): the outside level of the half-maximum outline.
FAT_HU = -100.0
#: The psoas is what holds a disc of this radius (mm): a muscle, not an 8–14-mm artery.
PSOAS_OPEN_RADIUS_MM = 8.0
#: Iliac minimal path held in a cone below its seed (:func:`iliac_cone_floor_mm`): (least angle from
#: the body's long axis towards the side, degrees; descent over which the floor grows, mm; slack, mm).
#: None: no cone.
ILIAC_CONE = (10.0, 45.0, 5.0)
#: Iliac minimal path kept in front of the thick lateral bone of its side (:func:`lateral_bone_front_px`):
#: (least distance from the seed towards the side, mm; in-plane radius that the bone must hold, mm:
#: the femoral head, the acetabulum, the sacro-iliac joint, not the thin iliac wing; how far, mm, the
#: course found with the rule may lie from the one found without it, else the rule is not applied;
#: compared down to this far, mm, above the first slice of that bone). None: not applied.
ILIAC_IN_FRONT_OF_HIP = (50.0, 12.0, 5.0, 15.0)
#: The greedy iliac/femoral track ends after this many mm of slices without a fit; gaps up to
#: :data:`ARTERY_COAST_MM` are bridged by interpolation, longer ones are crossed on a held
#: prediction and left empty (uncertain).
ARTERY_MAX_GAP_MM = 50.0
ARTERY_COAST_MM = 12.0
#: After such a long gap a fit picks the track up only with this fraction of its rays on one wall and
#: a radius within this fraction of the last one.
REACQUIRE_MIN_HITS = 0.5
REACQUIRE_RADIUS_TOLERANCE = 0.3
#: Off the guide an artery's fit is kept only when its radius (before the cap) is within
#: :data:`REACQUIRE_RADIUS_TOLERANCE` of the track's calibre, the median radius of its last this
#: many fitted slices; None: only the previous slice's radius bounds it (a blob can creep up).
CALIBRE_WINDOW = 8
#: After :data:`ARTERY_COAST_MM` of missing slices a track that finds no clean tube on its held
#: prediction looks again on its course (the slope of its last :data:`CALIBRE_WINDOW` fitted centres
#: carried over the whole gap), taking a tube there only when the next slice shows it again. False:
#: held prediction only (round 8).
COAST_ON_COURSE = True
#: After such a gap, where the single search seed (:func:`_reseed`, the deepest blob near the
#: prediction) is no clean tube, the fit is also tried from this many further interior points of
#: the search disc (:func:`reseed_candidates`, best first), each again only taken when the next
#: slice shows it too; 0: one seed per prediction (round 10).
REACQUIRE_EXTRA_SEEDS = 4
#: The iliac minimal path ends this far above the iliac → femoral boundary (the femoral heads' centre), mm.
GUIDE_ABOVE_FEMORAL_MM = 20.0
#: Iliac → femoral boundary at the top of the pubic symphysis (:func:`pubic_symphysis_top`), as
#: TotalSegmentator's ``iliac_artery_*`` masks end; False: at the femoral heads' centre (the phantom's truth).
ILIAC_ENDS_AT_PUBIS = True
#: Aortic bifurcation by narrowing: the first iliac slice is where the radius first fell below this
#: fraction of the aorta above (not only the first of three slices below 0.72 ×).
BIFURCATION_AT_TAPER_START = True
BIFURCATION_TAPER_RATIO = 0.85
#: Outer radius cap of the iliac/femoral arteries (mm; common iliac ≈ 10–14 mm across with wall).
ILIAC_MAX_RADIUS_MM = 7.5
#: A run of aortic fits shorter than this (mm of z) at the caudal end of the track, below a longer
#: gap bridged by interpolation, is not aorta: it is dropped with the gap and the bifurcation is
#: looked for below the last real fit (:func:`drop_stub_after_gap`; round 17b). None: kept (≤ round 17).
AORTA_TAIL_MIN_MM: float | None = 7.5
#: Below the minimal path's end (non-contrast), draw the outline no wider than the calibre measured
#: over the path's lowest :data:`CALIBRE_LENGTH_MM` (:func:`path_calibre_mm`); None: no cap.
CALIBRE_LENGTH_MM: float | None = 15.0
#: Aorta (round 13): a fit wider than (1 + this) × the track's calibre (the larger of the median
#: radii of its last :data:`CALIBRE_WINDOW` and 3 × :data:`CALIBRE_WINDOW` fits) and not round (fewer
#: than :data:`AORTA_ROUND_HITS` of its rays within ± 15 % of its radius) is refitted with the radius
#: held at the calibre (:func:`calibre_held_fit`), kept when at least :data:`AORTA_HELD_MIN_HITS` of
#: its rays end on the calibre's wall, else the slice is a gap; None: only the previous slice bounds
#: the radius (docs/segmentation.md, round 13).
AORTA_CALIBRE_GATE: float | None = 0.2
AORTA_HELD_MIN_HITS = 0.35
AORTA_ROUND_HITS = 0.9
#: Round 15 (issue 6): an iliac fit on the path whose rays mostly miss its circle (hit fraction below
#: :data:`CLEAN_HITS`) and narrower than (1 − this) × the calibre of the clean fits nearest to it is
#: refitted with the radius held at that calibre (:func:`refit_short_iliac`); None switches it off.
GUIDED_CALIBRE_HOLD: float | None = 0.15
CLEAN_HITS = 0.8
#: ... and the held fit is kept when at least this fraction of its rays end on its wall.
HELD_MIN_HITS = 0.65
#: Round 22 (issue 6): a run of iliac fits on the path with fewer than :data:`WEAK_HITS` of their rays
#: on their wall, between two clean fits (≥ :data:`CLEAN_HITS`) at most this far apart along z (mm), is
#: re-routed by a minimal path pinned at those clean fits (:func:`reroute_weak_guided_fits`): where the
#: tube is not seen, the iliac path's position is its cost's guess and sits 3–8 mm off the artery (on
#: its fat-faced front edge, on a neighbour in front). The span is the tracker's own longest crossing of
#: unseen slices (:data:`ARTERY_MAX_GAP_MM`); None switches it off.
WEAK_REROUTE_MM: float | None = ARTERY_MAX_GAP_MM
#: ... fewer than this fraction of rays on the wall: over the 44 non-contrast dev iliac tracks of round
#: 21 such fits are > 2 mm off the truth's centre on 42–75 % of slices (18 % at 0.6–0.7, 1 % at ≥ 0.8).
WEAK_HITS = 0.6
#: ... the re-routed course stays within this distance (mm) of the straight line between the clean fits:
#: room for the artery's bend at the pelvic brim (6 mm off that line on bench seed 1, round 21), not for
#: the muscle or the vein 10–40 mm away.
WEAK_REROUTE_CORRIDOR_MM = 8.0
#: ... and only a weak fit whose disc at the clean fits' calibre is less than this fraction tissue (by
#: area): a fit on the artery's edge or on a neighbour in front reaches into the fat, while a weak fit
#: whose disc is (nearly) full lies inside the tube with a neighbour merged to it, and there a course
#: centred in the merged tissue was 1.4–3.4 mm off where the fit was 0.5–2.3 mm (dev non-contrast and
#: screw seed 9 right, discs 0.82–1.0 tissue; 0.9 still lost 0.005–0.008 there, round 22).
WEAK_REROUTE_MAX_FILL = 0.8
#: Round 17 (issue 6): where the longest aorta track found one iliac at its end, a track from another
#: start on the same tube (:func:`same_tube`) whose bifurcation showed both iliacs is taken instead.
AORTA_PREFER_BOTH_ILIACS = True
#: An aorta track narrowed to an iliac when its radius falls below this fraction of the aorta's
#: (:func:`_bifurcation_by_radius`: < 0.72 × the 8 slices above, on three slices).
AORTA_NARROWED_RATIO = 0.72
#: Round 27 (issue 6): a track whose split test fired only after the track had narrowed to an iliac's
#: calibre (:func:`split_at_aortic_calibre` false) ran past the bifurcation into one iliac and split
#: something further down (dev screw seed 15: streaks above the bifurcation, then the right iliac and its
#: vein down to slice 16); a track from another start on the same tube whose split came at the aorta's
#: calibre is taken instead. False switches it off.
AORTA_SPLIT_AT_CALIBRE = True
#: Round 28 (issue 6): where the aorta track just ends and the two iliacs are found only some slices
#: below its end (not separable there: a neighbour touches them), a seed whose back wall lies in front
#: of the aorta's back wall by more than its own radius is moved back onto that plane
#: (:func:`seed_on_aortic_plane`; dev seed 11: bowel in front of both iliacs, seeds 6.6–11.2 mm
#: off, in front). False switches it off.
SEED_ON_AORTIC_PLANE = True
#: Round 18 (issue 6): while a guided iliac track holds only its seed, the first fit's radius is
#: compared with at least this (mm; the common-iliac prior of the seed refit): a seed thinner than
#: any iliac (the crotch of a split blob) otherwise refused every fit on the path. None switches it off.
GUIDED_SEED_MIN_RADIUS_MM: float | None = 4.0
#: Round 24 (issue 6): the floor above holds while the track has no clean fit (≥ :data:`CLEAN_HITS`
#: of its rays) yet, not only for its first fit: thin weak fits after a thin seed refused the artery.
GUIDED_FLOOR_UNTIL_CLEAN = True
#: Round 25 (issue 6): on CTA a lumen blob wider than deep below the aorta is split into two iliacs only
#: where it shows a crotch (:func:`blob_has_crotch`): the aorta's last slice is an oval lumen, and its
#: split handed one iliac a disc on the midline, drawn over the aorta. False switches it off.
SPLIT_NEEDS_CROTCH = True
#: Round 14 (issue 6): on CTA, a large aortic plaque (> 400 HU) anchored the skeleton's "cortex" and the
#: contrast lumen beside it was taken for marrow, so the plaque was cut out of the aorta. The first
#: CTA track's lumen (and the dense components lying on its wall, within this band in mm) are refused
#: as bone, and the aorta is tracked again. None switches it off.
AORTIC_PLAQUE_BAND_MM: float | None = 4.0
#: Non-contrast: a calcium component touching an artery's outline, ≥ 80 % of it within this in-plane
#: distance (mm) of it, is the artery's (:func:`grow_into_wall_calcium`, round 19); None turns it off.
WALL_CALCIUM_REACH_MM: float | None = 4.5
#: Arteries whose wall calcium is kept by :func:`grow_into_wall_calcium` (the drawn vessels on non-contrast CT).
ARTERY_NAMES = ("aorta", "iliac_artery_left", "iliac_artery_right", "femoral_artery_left", "femoral_artery_right")
_N_RAYS = 32
_ANGLES = np.linspace(0.0, 2.0 * np.pi, _N_RAYS, endpoint=False)
_UNIT = np.stack([np.sin(_ANGLES), np.cos(_ANGLES)], axis=1)  # (dy, dx): 0 = +x (left), π/2 = +y (posterior)


@dataclass(frozen=True, eq=False)
class VesselResult:
    """Vessel masks of :func:`segment_vessels`.

    ``labels``: LabelMap on the volume's grid with the names of :data:`VESSEL_LABELS` (one label
    per voxel; an empty name = looked for, not found). ``uncertain_slices``: per name, the slice
    indices (axis 0 of the volume array) where the evidence was missing and nothing was drawn
    (also in ``labels.uncertain_slices``). ``contrast_detected``: aortic lumen median >
    :data:`CONTRAST_LUMEN_HU`. ``lumen_hu_median``: that median (NaN when no aorta was found).
    ``elapsed_s``: wall-clock runtime. ``notes``: what was found or not, in words.
    """

    labels: LabelMap
    uncertain_slices: dict[str, tuple[int, ...]]
    contrast_detected: bool
    lumen_hu_median: float
    elapsed_s: float
    notes: tuple[str, ...] = field(default_factory=tuple)


# ----------------------------------------------------------------------------------------------
# orientation and resolution
# ----------------------------------------------------------------------------------------------

def _canonical_frame(direction: np.ndarray) -> tuple[tuple[int, int, int], tuple[bool, bool, bool]]:
    """Axis permutation and flips taking a (z, y, x) array to (superior, posterior, left) order.

    ``direction``: 3×3, columns = LPS unit vectors of the x, y, z index axes (as :class:`Grid`).
    Oblique grids are read by their dominant component.
    """
    dominant = [int(np.argmax(np.abs(direction[:, 2 - a]))) for a in range(3)]  # LPS component per array axis
    if sorted(dominant) != [0, 1, 2]:
        raise InputError("the volume's direction matrix has no clear axial orientation; resample it to an axial grid")
    perm = tuple(dominant.index(2 - c) for c in range(3))
    flips = tuple(bool(direction[2 - c, 2 - perm[c]] < 0) for c in range(3))
    return perm, flips


def _to_canonical(arr: np.ndarray, perm, flips) -> np.ndarray:
    out = np.transpose(arr, perm)
    return out[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]


def _from_canonical(arr: np.ndarray, perm, flips) -> np.ndarray:
    out = arr[tuple(slice(None, None, -1) if f else slice(None) for f in flips)]
    return np.transpose(out, np.argsort(perm))


def _block_mean(hu: np.ndarray, f: int) -> np.ndarray:
    """In-plane block mean by an integer factor (edges cropped to a multiple of ``f``)."""
    if f == 1:
        return hu.astype(np.float32)
    nz, ny, nx = hu.shape
    a = hu[:, : ny // f * f, : nx // f * f].astype(np.float32)
    return a.reshape(nz, ny // f, f, nx // f, f).mean(axis=(2, 4))


# ----------------------------------------------------------------------------------------------
# bone and body (private fallbacks when the landmark segmenter gives none)
# ----------------------------------------------------------------------------------------------

def _slicewise_fill(mask: np.ndarray) -> np.ndarray:
    return ndimage.binary_fill_holes(mask, structure=np.array([[[0, 0, 0], [0, 0, 0], [0, 0, 0]],
                                                               [[0, 1, 0], [1, 1, 1], [0, 1, 0]],
                                                               [[0, 0, 0], [0, 0, 0], [0, 0, 0]]], bool))


def _open_thin(bone: np.ndarray, spacing_mm, width_mm: float = 2.0) -> np.ndarray:
    """In-plane opening: removes what is thinner than ≈ 2 × ``width_mm`` — a wall plaque that
    touches a vertebra (the threshold joins them) and the bridge between them — while the filled
    vertebral bodies, pelvis and femurs stay."""
    k = max(1, int(round(width_mm / float(min(spacing_mm[1], spacing_mm[2])))))
    cross = np.zeros((3, 3, 3), bool)
    cross[1] = ndimage.generate_binary_structure(2, 1)
    return ndimage.binary_opening(bone, structure=cross, iterations=k)


def wall_plaque_mask(dense: np.ndarray, lumen: np.ndarray, spacing_mm, *, band_mm: float,
                     min_inside: float = 0.8) -> np.ndarray:
    """Dense components (bool ``dense``) that lie on the wall of a contrast lumen (bool ``lumen``):
    at least ``min_inside`` of their voxels within ``band_mm`` (in-plane, mm) of the lumen.

    An aortic plaque is a thin arc on the wall of the round lumen; a vertebra's cortex that the
    plaque touches joins it into one component reaching far beyond the band, and stays bone
    (issue 6, docs/segmentation.md round 14). Same grid for both masks; ``spacing_mm`` (dz, dy, dx)."""
    band = np.zeros(dense.shape, bool)
    if not (dense.any() and lumen.any()):
        return band
    # in-plane distance to the lumen, slice by slice (a huge z sampling keeps slices apart), in the
    # lumen's bounding box grown by the band only
    zz, yy, xx = np.nonzero(lumen)
    pad = np.ceil(band_mm / np.asarray(spacing_mm, float)[1:]).astype(int) + 1
    box = (slice(zz.min(), zz.max() + 1), slice(max(yy.min() - pad[0], 0), yy.max() + pad[0] + 1),
           slice(max(xx.min() - pad[1], 0), xx.max() + pad[1] + 1))
    band[box] = ndimage.distance_transform_edt(~lumen[box], sampling=(1e6, float(spacing_mm[1]),
                                                                     float(spacing_mm[2]))) <= band_mm
    lab, n = ndimage.label(dense)
    total = np.bincount(lab.ravel(), minlength=n + 1)
    near = np.bincount(lab[band].ravel(), minlength=n + 1)
    ok = near >= min_inside * np.maximum(total, 1)
    ok[0] = False
    return ok[lab]


def grow_into_wall_calcium(labels: np.ndarray, hu: np.ndarray, spacing_mm, artery_ids, *, reach_mm: float,
                           calcium_hu: float = 130.0, min_peak_hu: float = 200.0, free_ids=(),
                           min_inside: float = 0.8) -> np.ndarray:
    """Non-contrast CT: calcium on an artery's wall that the drawn outline cut through is given to
    that artery (SCORING.md C: the wall is where calcium sits).

    A 3-D face-connected component of voxels with ``hu`` ≥ ``calcium_hu`` (the Agatston threshold)
    that are unlabelled (or carry one of ``free_ids``: veins, which hold no calcium) is added when
    it touches an artery (``labels`` ∈ ``artery_ids``), peaks at ≥ ``min_peak_hu`` (Agatston weight
    ≥ 2: a lone 130–199-HU voxel by the wall is as likely noise or bowel content as calcium, real
    3-mm CT) and at least ``min_inside`` of it lies within
    ``reach_mm`` in-plane of that artery — the rule of :func:`wall_plaque_mask`: a plaque is a small
    arc on the wall, while the rim of a vertebra beside the aorta belongs to a body reaching far
    beyond (real 3-mm CT). The outline is a fitted star (the fat edge), which stops short of a
    plaque where the wall lies against muscle and no fat marks its edge (issue 6, round 19). Each
    voxel takes the label of its nearest artery voxel. Returns a new label array; ``spacing_mm`` is
    (dz, dy, dx) in mm, ``hu`` in HU."""
    out = labels.copy()
    art = np.isin(labels, list(artery_ids))
    if not art.any():
        return out
    sp = np.asarray(spacing_mm, float)
    zz, yy, xx = np.nonzero(art)
    # a box wide enough to see that a bone's component reaches far beyond the band
    pad = np.ceil(4.0 * reach_mm / sp).astype(int) + 1
    box = tuple(slice(max(int(v.min()) - p, 0), int(v.max()) + p + 1) for v, p in zip((zz, yy, xx), pad))
    a = art[box]
    lab_box = labels[box]
    calc = (hu[box] >= calcium_hu) & ((lab_box == 0) | np.isin(lab_box, list(free_ids)))
    if not calc.any():
        return out
    comp, n = ndimage.label(calc)
    touching = np.unique(comp[ndimage.binary_dilation(a) & calc])
    peak = ndimage.maximum(hu[box], comp, np.arange(n + 1))
    win = out[box]
    extents = ndimage.find_objects(comp)
    for k in touching[(touching > 0) & (peak[touching] >= min_peak_hu)]:
        # the distance map only around this component (+ the pad): a whole-scan map with indices
        # costs seconds and GB on a 512² CT, and a voxel within reach has its nearest artery voxel there
        sub = tuple(slice(max(e.start - p, 0), e.stop + p) for e, p in zip(extents[k - 1], pad))
        dist, idx = ndimage.distance_transform_edt(~a[sub], sampling=(1e6, sp[1], sp[2]), return_indices=True)
        mine = comp[sub] == k
        near = mine & (dist <= reach_mm)  # in-plane distance: the huge z sampling keeps slices apart
        if np.count_nonzero(near) < min_inside * np.count_nonzero(mine):
            continue
        lab_sub, win_sub = lab_box[sub], win[sub]
        win_sub[near] = lab_sub[idx[0][near], idx[1][near], idx[2][near]]
    return out


def contrast_lumen_mask(img: np.ndarray, spacing_mm, track: dict[int, tuple[np.ndarray, float, float]], *,
                        cortex_hu: float = 400.0, margin_mm: float = 4.0, window: int = 8) -> np.ndarray:
    """The contrast-filled lumen around a tracked tube, slice by slice: pixels of ``img`` (HU) above
    half-way between the slice's lumen HU and soft tissue (40 HU) and below ``cortex_hu``, in-plane
    connected to the fit's core, within the track's calibre + ``margin_mm`` of its centre.

    ``track``: {slice: (centre_mm (y, x) on the pixel grid, radius_mm, lumen_hu)}. The calibre is the
    largest radius over ± ``window`` slices (at most 1.5 × their median), so that a slice whose fit
    shrank (its rays stopped on a false bone) still gets its whole lumen. Returns a bool mask of
    ``img``'s shape (issue 6)."""
    out = np.zeros(img.shape, bool)
    zs = np.array(sorted(track))
    if zs.size == 0:
        return out
    radii = np.array([track[z][1] for z in zs])
    sp = np.asarray(spacing_mm, float)[1:]
    for z in zs:
        centre, r_fit, inside = track[int(z)]
        sel = np.abs(zs - z) <= window
        # the widest fit nearby (a shrunk fit also moved its centre away from the false bone), but
        # not a swollen one: at most 1.5 × the local median
        r_out = min(float(radii[sel].max()), 1.5 * float(np.median(radii[sel]))) + margin_mm
        c_px = np.asarray(centre, float) / sp
        lo = np.maximum(np.floor(c_px - r_out / sp).astype(int), 0)
        hi = np.minimum(np.ceil(c_px + r_out / sp).astype(int) + 1, img.shape[1:])
        if np.any(hi <= lo):
            continue
        yy, xx = np.mgrid[lo[0]:hi[0], lo[1]:hi[1]]
        d = np.hypot(yy * sp[0] - centre[0], xx * sp[1] - centre[1])
        win = img[z, lo[0]:hi[0], lo[1]:hi[1]]
        cand = (d <= r_out) & (win > 0.5 * (inside + 40.0)) & (win < cortex_hu)
        lab, n = ndimage.label(cand)
        if n == 0:
            continue
        core = lab[(d <= max(0.5 * r_fit, 1.5 * float(sp.max()))) & cand]
        keep = np.zeros(n + 1, bool)
        keep[np.unique(core)] = True
        keep[0] = False
        out[z, lo[0]:hi[0], lo[1]:hi[1]] = keep[lab]
    return out


def threshold_bones(hu_small: np.ndarray, spacing_mm, *, threshold_hu: float = 180.0, cortex_hu: float | None = None,
                    min_volume_mm3: float = 3000.0, reach_mm: float = 6.0, lumen: np.ndarray | None = None,
                    plaque_band_mm: float = 4.0) -> np.ndarray:
    """Skeleton mask by threshold: components of HU > ``threshold_hu`` larger than
    ``min_volume_mm3`` (isolated vessel calcium is small), marrow filled slice by slice.

    With ``cortex_hu`` (for CTA, e.g. 400) only voxels within ``reach_mm`` of dense bone
    (HU > ``cortex_hu``) count: that keeps a contrast-filled aorta (≈ 200–500 HU, homogeneous,
    no cortex) out of the skeleton even where it touches a vertebra.

    ``lumen`` (CTA only; bool, e.g. :func:`contrast_lumen_mask`): a known contrast lumen is never
    marrow, and dense components on its wall (:func:`wall_plaque_mask`, ``plaque_band_mm``) are
    plaques, not cortex: neither enters the skeleton (issue 6)."""
    if cortex_hu is None:
        raw = hu_small > threshold_hu
        lab, n = ndimage.label(raw)
        if n == 0:
            return raw
        sizes = np.bincount(lab.ravel())[1:] * float(np.prod(spacing_mm))
        return _open_thin(_slicewise_fill(np.concatenate([[False], sizes >= min_volume_mm3])[lab]), spacing_mm)
    dense = (hu_small > cortex_hu) & (hu_small < METAL_HU)  # metal (a stent in an artery) anchors no bone
    refused = None
    if lumen is not None and lumen.any():
        refused = lumen | wall_plaque_mask(dense, lumen, spacing_mm, band_mm=plaque_band_mm)
        dense &= ~refused
    lab, n = ndimage.label(dense)
    if n == 0:
        return np.zeros(hu_small.shape, bool)
    sizes = np.bincount(lab.ravel())[1:] * float(np.prod(spacing_mm))
    keep = np.concatenate([[False], sizes >= 0.1 * min_volume_mm3])[lab]
    it = max(1, int(round(reach_mm / float(min(spacing_mm[1], spacing_mm[2])))))
    near = ndimage.binary_dilation(keep, structure=np.array([[[0, 0, 0], [0, 0, 0], [0, 0, 0]],
                                                             [[0, 1, 0], [1, 1, 1], [0, 1, 0]],
                                                             [[0, 0, 0], [0, 0, 0], [0, 0, 0]]], bool),
                                   iterations=it)
    raw = (hu_small > threshold_hu) & near
    if refused is not None:
        raw &= ~refused
    lab, n = ndimage.label(raw)
    if n == 0:
        return raw
    sizes = np.bincount(lab.ravel())[1:] * float(np.prod(spacing_mm))
    bone = np.concatenate([[False], sizes >= min_volume_mm3])[lab]
    # close gaps in the partial-volumed cortical shell so that the marrow inside gets filled
    ring = np.zeros((3, 3, 3), bool)
    ring[1] = ndimage.generate_binary_structure(2, 1)
    k = max(1, int(round(3.0 / float(min(spacing_mm[1], spacing_mm[2])))))
    closed = ndimage.binary_closing(np.pad(bone, ((0, 0), (k, k), (k, k))), structure=ring, iterations=k)[:, k:-k, k:-k]
    out = _open_thin(_slicewise_fill(closed | bone), spacing_mm)
    if refused is not None:
        out &= ~refused  # the closing and the fill may wrap a lumen lying in a vertebra's hollow
    return out


def threshold_body(hu_small: np.ndarray) -> np.ndarray:
    """Body mask: HU > −400, holes (bowel gas, lungs) filled slice by slice."""
    return _slicewise_fill(hu_small > -400)


# ----------------------------------------------------------------------------------------------
# the tube tracker
# ----------------------------------------------------------------------------------------------

@dataclass
class _Ctx:
    img: np.ndarray          # smoothed HU, canonical small grid (z, y, x)
    bone: np.ndarray         # bool, canonical small grid
    spacing: np.ndarray      # (dz, dy, dx) mm of the small grid
    contrast: bool
    edge_hu: float           # inside = HU above this (fat edge, or half-lumen on CTA)


def _cast_rays(ctx: _Ctx, z: int, centre_mm: np.ndarray, r_max_mm: float, step_mm: float = 0.5) -> np.ndarray:
    """Distance (mm) along each ray from ``centre_mm`` (y, x) to the first sample outside the tube
    (below ``edge_hu`` or in bone); NaN where the ray stays inside up to ``r_max_mm``."""
    radii = np.arange(step_mm, r_max_mm + step_mm, step_mm)
    pts = centre_mm[None, None, :] + radii[None, :, None] * _UNIT[:, None, :]  # (rays, samples, 2) mm
    idx = pts / ctx.spacing[1:]
    coords = [idx[..., 0].ravel(), idx[..., 1].ravel()]
    vals = ndimage.map_coordinates(ctx.img[z], coords, order=1, mode="nearest").reshape(pts.shape[:2])
    bone = ndimage.map_coordinates(ctx.bone[z].astype(np.uint8), coords, order=0, mode="constant",
                                   cval=0).reshape(pts.shape[:2]).astype(bool)
    outside = (vals < ctx.edge_hu) | bone
    hit = outside.any(axis=1)
    first = np.argmax(outside, axis=1)
    out = np.where(hit, radii[first] - 0.5 * step_mm, np.nan)
    return out


@dataclass
class _Fit:
    centre_mm: np.ndarray
    radii_mm: np.ndarray     # per ray, outer boundary (before wall growth)
    radius_mm: float
    hit_fraction: float
    inside_hu: float


def _robust_radius(r: np.ndarray) -> float:
    """Tube radius from ray lengths: the length shared (±15 %) by the most rays, the shorter one
    on ties — rays escaping through an attached organ (IVC, a branch, a muscle) are long or
    endless and scattered, while the true wall ends many rays at one distance."""
    hits = np.sort(r[np.isfinite(r)])
    if hits.size == 0:
        return float("nan")
    support = (np.abs(hits[None, :] - hits[:, None]) <= 0.15 * hits[:, None] + 0.5).sum(axis=1)
    best = int(np.argmax(support))  # first maximum = shortest radius among ties
    near = hits[np.abs(hits - hits[best]) <= 0.15 * hits[best] + 0.5]
    return float(np.median(near))


def _circle_fit(points: np.ndarray, c0: np.ndarray, r0: float, free_radius: bool) -> tuple[np.ndarray, float]:
    """Geometric least-squares circle through ``points`` (n, 2) mm, Gauss-Newton from (c0, r0);
    the radius is held at ``r0`` when the points cover too little of the circle to fix it."""
    c, r = c0.astype(float).copy(), float(r0)
    for _ in range(6):
        d = points - c
        dist = np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-6)
        res = dist - r
        jc = -d / dist[:, None]
        jac = np.column_stack([jc, -np.ones(len(points))]) if free_radius else jc
        step, *_ = np.linalg.lstsq(jac, -res, rcond=None)
        c = c + step[:2]
        if free_radius:
            r = float(np.clip(r + step[2], 0.7 * r0, 1.3 * r0))
        if np.hypot(*step[:2]) < 0.05:
            break
    return c, r


def _fit_tube(ctx: _Ctx, z: int, centre_mm: np.ndarray, r_prior_mm: float, n_iter: int = 3,
              radius_mm: float | None = None) -> _Fit | None:
    """Re-centre a tube near ``centre_mm`` on slice ``z``. Rays are cast to the first non-tube
    sample; the hits that agree on one radius (the wall) get a circle fitted through them, the
    others (escaping through an attached IVC, branch or muscle) are ignored; repeated from the
    new centre. ``radius_mm``: the wall's radius is taken as known (the hits that agree with it
    place the circle, whose radius is held) instead of the radius most rays share."""
    c = np.asarray(centre_mm, float).copy()
    r_max = 2.0 * r_prior_mm + 4.0
    for _ in range(n_iter):
        r = _cast_rays(ctx, z, c, r_max)
        if np.count_nonzero(np.isfinite(r)) < _N_RAYS // 4:
            return None
        rad = _robust_radius(r) if radius_mm is None else float(radius_mm)
        good = np.isfinite(r) & (np.abs(r - rad) <= 0.3 * rad + 0.5)
        if np.count_nonzero(good) < 6:
            return None
        pts = c + r[good, None] * _UNIT[good]
        # the hits fix the radius only when they span more than half the circle
        spread = np.hypot(*(_UNIT[good].mean(axis=0)))
        c_new, _ = _circle_fit(pts, c, rad, free_radius=spread < 0.3 and radius_mm is None)
        if np.hypot(*(c_new - c)) > rad:  # a wild step: keep the safer mean-shift move
            c_new = c + np.clip(2.0 * (np.where(good, r, rad)[:, None] * _UNIT).mean(axis=0), -0.5 * rad, 0.5 * rad)
        moved = np.hypot(*(c_new - c))
        c = c_new
        if moved < 0.3:
            break
    r = _cast_rays(ctx, z, c, r_max)
    if np.count_nonzero(np.isfinite(r)) < _N_RAYS // 4:
        return None
    rad = _robust_radius(r) if radius_mm is None else float(radius_mm)
    ok = np.isfinite(r) & (r > 0.7 * rad) & (r < 1.3 * rad)
    radii = np.where(ok, r, rad)
    # smooth the outline around the circle (3-tap circular mean) and keep it near-round
    radii = np.clip((np.roll(radii, 1) + radii + np.roll(radii, -1)) / 3.0, 0.85 * rad, 1.15 * rad)
    yi, xi = np.round(c / ctx.spacing[1:]).astype(int)
    ny, nx = ctx.img.shape[1:]
    if not (0 <= yi < ny and 0 <= xi < nx) or ctx.bone[z, yi, xi] or ctx.img[z, yi, xi] < ctx.edge_hu or rad < 1.5:
        return None
    # a "tube" walled in by bone on most sides is marrow inside a vertebra, not a vessel
    edge_pts = (c[None, :] + (radii[:, None] + 1.0) * _UNIT) / ctx.spacing[1:]
    on_bone = ndimage.map_coordinates(ctx.bone[z].astype(np.uint8), [edge_pts[:, 0], edge_pts[:, 1]], order=0,
                                      mode="constant", cval=0)
    if on_bone.mean() > 0.5:
        return None
    core = ctx.img[z, max(yi - 1, 0): yi + 2, max(xi - 1, 0): xi + 2]
    return _Fit(c, radii, float(np.mean(radii)), float(ok.mean()), float(np.median(core)))


def half_max_radii(img: np.ndarray, spacing_yx_mm, centre_mm: np.ndarray, radii_mm: np.ndarray, inside_hu: float,
                   *, fat_hu: float = FAT_HU, edge_hu: float = FAT_EDGE_HU, reach_mm: float = 4.0,
                   step_mm: float = 0.25, tilt_yx: np.ndarray | tuple[float, float] | None = None) -> np.ndarray:
    """Sub-voxel outer radius per ray (mm) of a tube on one axial slice ``img`` (HU, y, x), at the
    half-maximum between its inside (``inside_hu``) and fat (``fat_hu``).

    For each of the 32 rays (:data:`_UNIT`) from ``centre_mm`` (y, x) the profile is sampled
    (bilinear, every ``step_mm``) out to ``radii_mm`` + ``reach_mm``. Where the ray reaches fat
    (a sample below ``edge_hu``) beyond half its radius, the radius is the first crossing of
    (inside + fat) / 2 there, linearly interpolated between samples; where the ray ends on a
    neighbour (no fat), the given radius is moved by the median correction of the rays in fat
    (none in fat: all kept). The fat level is the tissue constant, not the
    profile's minimum: a thin fat plane is blurred (by the scan, or by smoothing) and never reaches
    it, and the half-way level between the blurred minimum and the vessel would cut the vessel
    short. The fixed tracking edge (−15 HU) lies nearer the tissue than the half-maximum (≈ −30 HU
    between 40-HU blood and −100-HU fat), so the tracker's outline is a fraction of a voxel small.
    ``tilt_yx`` (in-plane mm per mm of z, :func:`track_tilt_yx`; round 20): the tube is oblique, and its
    axial section an ellipse stretched by 1/cos θ along the tilt (:func:`oblique_wall_mm` with a unit
    wall gives each ray's length relative to the tube's own radius). The rays ending on a neighbour
    then take that ellipse, scaled to the rays in fat (the median of their radius / relative length),
    instead of the tracker's near-circle: on muscle the iliac's section runs on further along the tilt
    than across it. Units: mm, HU."""
    sy, sx = (float(s) for s in spacing_yx_mm)
    radii_mm = np.asarray(radii_mm, float)
    t = np.arange(0.0, float(radii_mm.max()) + reach_mm + step_mm, step_mm)
    pts = np.asarray(centre_mm, float)[None, None, :] + t[None, :, None] * _UNIT[:, None, :]
    prof = ndimage.map_coordinates(np.asarray(img, np.float32), [pts[..., 0].ravel() / sy, pts[..., 1].ravel() / sx],
                                   order=1, mode="nearest").reshape(pts.shape[:2])
    beyond = (t[None, :] <= radii_mm[:, None] + reach_mm) & (t[None, :] >= 0.5 * radii_mm[:, None])
    level = 0.5 * (float(inside_hu) + fat_hu)
    below = (prof < level) & beyond
    first = np.argmax(below, axis=1)
    found = below.any(axis=1) & (beyond & (prof < edge_hu)).any(axis=1) & (first > 0)
    i = np.maximum(first, 1)
    rows = np.arange(len(radii_mm))
    p0, p1 = prof[rows, i - 1], prof[rows, i]
    frac = np.clip((p0 - level) / np.maximum(p0 - p1, 1e-6), 0.0, 1.0)
    r = np.where(found, t[i - 1] + frac * step_mm, radii_mm)
    if found.any():
        # a ray ending on a neighbour carries the tube's own radius (the tracker set it so), which
        # needs the same correction as the rays that see fat: growing only the fat side would
        # shift the outline away from the neighbour
        if tilt_yx is not None and float(np.hypot(*tilt_yx)) > 0.0:
            rel = oblique_wall_mm(1.0, tilt_yx)
            r = np.where(found, r, float(np.median(r[found] / rel[found])) * rel)
        else:
            r = np.where(found, r, radii_mm + float(np.median(r[found] - radii_mm[found])))
    return r


def half_max_band_mm(radii_mm: np.ndarray, radius_mm: float, tilt_yx=None, *,
                     margin_mm: float = 1.5) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest radius (mm) per ray that the half-maximum outline of a non-contrast artery
    (:func:`half_max_radii`) may take about the tracker's rays ``radii_mm`` (radius ``radius_mm``).

    The band (± ``margin_mm``) keeps the outline off a neighbour the profile runs on into. But the
    tracker's rays are a near-circle (:func:`_fit_tube`: a ray beyond 1.3 × the radius most rays share
    falls back to that radius, the others are held within ±15 % of it), while a tube tilted by θ
    (``tilt_yx``, :func:`track_tilt_yx`) is cut by the axial plane as an ellipse that reaches
    radius × (1/cos θ − 1) further along the tilt (:func:`oblique_wall_mm` with a unit wall). An
    external iliac running forward to the inguinal ligament at ≈ 45–50° is ≈ 1.5 × longer along its
    tilt than across it, and the fixed band cut that length short (docs/segmentation.md, round 26).
    The upper end is raised by that stretch on each ray; the lower end, and every ray across the
    tilt, keep the fixed band. Units: mm."""
    radii = np.asarray(radii_mm, float)
    stretch = 0.0 if tilt_yx is None else float(radius_mm) * (oblique_wall_mm(1.0, tilt_yx) - 1.0)
    return radii - margin_mm, radii + margin_mm + stretch


def band_tilt_yx(tilt_yx, hit_fraction: float, slices_from_seed: int, *, reach: int = 2,
                 weak_hits: float = WEAK_HITS):
    """The tilt (y, x mm per mm along z) that raises a fit's half-maximum band (:func:`half_max_band_mm`),
    or None where the track's tilt is not the tube's (round 26b):
    - on a weak fit (fewer than ``weak_hits`` of its rays on its wall) the centre is the course's guess,
      and the tilt read off it is the course's jitter (tan θ up to 1.14 on a buried stretch, round 26);
    - within ``reach`` slices of the iliac's seed (``slices_from_seed``, in slices) the tilt's reading
      (:func:`track_tilt_yx`, ``reach`` slices up and down) spans the seed: the split blob at the
      bifurcation, whose jump to the tube below is not the tube's course."""
    if hit_fraction < weak_hits or abs(slices_from_seed) <= reach:
        return None
    return tilt_yx


def oblique_wall_mm(wall_mm: float, tilt_yx, *, max_tilt_deg: float = 60.0) -> np.ndarray:
    """Wall thickness (mm) seen along each of the 32 rays (:data:`_UNIT`) on an axial slice, for a
    tube whose axis moves ``tilt_yx`` (y, x) mm in-plane per mm along z.

    An axial plane cuts a tube tilted by θ (tan θ = |tilt|) as an ellipse stretched by 1/cos θ along
    the tilt: a ring of thickness w is w along the perpendicular and w / cos θ along the tilt, and
    in between w / √(cos²α · cos²θ + sin²α) (α: ray angle from the tilt direction). Added to the
    lumen's own (elliptical) section it gives the outer wall's section exactly. θ is capped at
    ``max_tilt_deg`` (2 × w at most): a track's jitter must not swell the outline."""
    t = np.asarray(tilt_yx, float)
    tan = float(np.hypot(*t))
    if tan < 1e-9:
        return np.full(_N_RAYS, float(wall_mm))
    t = t / tan
    tan = min(tan, float(np.tan(np.deg2rad(max_tilt_deg))))
    cos_a = _UNIT @ t
    cos2_theta = 1.0 / (1.0 + tan * tan)
    return wall_mm / np.sqrt(cos_a ** 2 * cos2_theta + (1.0 - cos_a ** 2))


def track_tilt_yx(fits: dict, z: int, spacing_z_mm: float, reach: int = 2) -> np.ndarray:
    """In-plane displacement (y, x) mm per mm along z of a track at slice ``z``: the centres' change
    between the furthest fitted slices within ``reach`` above and below (0 where there is none)."""
    up = [k for k in range(z + reach, z, -1) if k in fits][:1] or [z]
    down = [k for k in range(z - reach, z) if k in fits][:1] or [z]
    if up[0] == down[0]:
        return np.zeros(2)
    return (fits[up[0]].centre_mm - fits[down[0]].centre_mm) / ((up[0] - down[0]) * spacing_z_mm)


def path_calibre_mm(radius_mm_by_slice: dict[int, float], path_slices, *, spacing_z_mm: float,
                    length_mm: float) -> float | None:
    """Calibre (mean outer radius, mm) of an artery at the lower end of its minimal path: the median
    of the per-slice radii on the path's lowest ``length_mm`` (slices of ``path_slices`` that have a
    radius in ``radius_mm_by_slice``; canonical z, superior = high). None when no path slice has one.

    An artery does not widen going down the leg (common iliac ≈ 5–7 mm, external iliac and common
    femoral ≈ 4–5 mm in radius), so this calibre bounds the outline on the greedy slices below the
    path, where a fit whose rays run on into a touching vein swells (docs/segmentation.md, round 6).
    The median is taken over several slices because one slice's fit may itself have leaked."""
    zs = sorted(z for z in path_slices if z in radius_mm_by_slice)
    if not zs:
        return None
    n = max(1, int(round(length_mm / float(spacing_z_mm))))
    return float(np.median([radius_mm_by_slice[z] for z in zs[:n]]))


def _smooth_track(fits: dict[int, _Fit], size: int = 5) -> dict[int, _Fit]:
    """Median-filter centres and per-ray radii along z over runs of consecutive slices: a tube
    changes slowly, single-slice leaks into a neighbour do not."""
    out: dict[int, _Fit] = {}
    zs = sorted(fits)
    if len(zs) < 3:
        return dict(fits)
    cen = np.array([fits[z].centre_mm for z in zs])
    rad = np.array([fits[z].radii_mm for z in zs])
    cen = ndimage.median_filter(cen, size=(3, 1), mode="nearest")
    rad = ndimage.median_filter(rad, size=(size, 1), mode="nearest")
    # the calibre changes slowly along a tube: keep each slice within ±15 % of the local trend
    trend = ndimage.median_filter(rad.mean(axis=1), size=3 * size, mode="nearest")
    rad = np.clip(rad, 0.85 * trend[:, None], 1.15 * trend[:, None])
    for i, z in enumerate(zs):
        f = fits[z]
        out[z] = _Fit(cen[i], rad[i], float(rad[i].mean()), f.hit_fraction, f.inside_hu)
    return out


def _reseed(ctx: _Ctx, z: int, pred_mm: np.ndarray, r_mm: float, reach_mm: float) -> np.ndarray:
    """Start point for the fit on slice ``z``: the most interior tube-like pixel near the
    prediction (distance-to-edge minus half the distance from the prediction), so that a tube
    that moved by several millimetres between slices is picked up from inside, not from the fat."""
    sy, sx = ctx.spacing[1:]
    half = reach_mm + r_mm
    y0, y1 = int(np.floor((pred_mm[0] - half) / sy)), int(np.ceil((pred_mm[0] + half) / sy)) + 1
    x0, x1 = int(np.floor((pred_mm[1] - half) / sx)), int(np.ceil((pred_mm[1] + half) / sx)) + 1
    ny, nx = ctx.img.shape[1:]
    y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, ny), min(x1, nx)
    if y0 >= y1 or x0 >= x1:
        return pred_mm
    inside = (ctx.img[z, y0:y1, x0:x1] > ctx.edge_hu) & ~ctx.bone[z, y0:y1, x0:x1]
    if not inside.any():
        return pred_mm
    depth = np.minimum(ndimage.distance_transform_edt(inside, sampling=(sy, sx)), r_mm)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    away = np.hypot(yy * sy - pred_mm[0], xx * sx - pred_mm[1])
    score = np.where(away <= reach_mm, depth - 0.5 * away, -np.inf)
    k = np.unravel_index(int(np.argmax(score)), score.shape)
    if not np.isfinite(score[k]):
        return pred_mm
    return np.array([(k[0] + y0) * sy, (k[1] + x0) * sx])


def reseed_candidates(inside: np.ndarray, spacing_yx_mm, pred_mm: np.ndarray, r_mm: float, reach_mm: float,
                      n: int) -> np.ndarray:
    """Up to ``n`` start points (mm, best first) on one slice: the local maxima, within ``reach_mm``
    of ``pred_mm``, of the :func:`_reseed` score (depth inside ``inside`` capped at ``r_mm``, minus
    half the distance from the prediction), each at least ``r_mm`` from a better one.

    :func:`_reseed` keeps only the best, which near a buried artery is often the larger muscle blob
    beside it; these are the other tubes a fit may start from (round 11)."""
    sy, sx = spacing_yx_mm
    if n <= 0 or not inside.any():
        return np.zeros((0, 2))
    depth = np.minimum(ndimage.distance_transform_edt(inside, sampling=(sy, sx)), r_mm)
    yy, xx = np.indices(inside.shape)
    away = np.hypot(yy * sy - pred_mm[0], xx * sx - pred_mm[1])
    score = np.where((away <= reach_mm) & inside, depth - 0.5 * away, -np.inf)
    size = max(3, 2 * int(round(r_mm / min(sy, sx))) + 1)
    peaks = np.isfinite(score) & (score == ndimage.maximum_filter(score, size=size, mode="constant", cval=-np.inf))
    idx = np.argwhere(peaks)
    order = np.lexsort((idx[:, 1], idx[:, 0], -score[peaks]))  # deterministic tie-break
    pts = idx[order] * np.array([sy, sx])
    kept: list[np.ndarray] = []
    for p in pts:  # a handful of peaks: keep those not within one radius of a better one
        if all(np.hypot(*(p - q)) >= r_mm for q in kept):
            kept.append(p)
        if len(kept) == n:
            break
    return np.array(kept).reshape(-1, 2)


@dataclass
class _Metal:
    """Metal voxels (HU > :data:`METAL_HU`) of the small grid, to ask whether a vessel position
    lies within reach of their streaks: :data:`METAL_REACH_SLICES` slices beyond the slices that
    hold metal along z, :data:`METAL_REACH_MM` in-plane."""

    zyx_mm: np.ndarray       # (n, 3) positions in mm
    dz_mm: float
    reach_mm: tuple[float, float] = (15.0, 40.0)

    @classmethod
    def find(cls, hu: np.ndarray, spacing_full, offset_mm) -> "_Metal | None":
        """From the full-resolution canonical HU (thin stent wires vanish in a block mean)."""
        idx = np.argwhere(hu > METAL_HU)
        if idx.size == 0:
            return None
        dz = float(spacing_full[0])
        # streaks are made by the reconstruction in the plane of the slices that hold metal; the
        # slice profile spreads them about one slice further (a fixed 15 mm blanked the whole
        # aortic bifurcation of a 2.5-mm scan around a 6-mm screw, where the vessels are clearly
        # seen 2 slices off the metal: docs/segmentation.md, round 4)
        reach_z = 15.0 if METAL_REACH_SLICES is None else METAL_REACH_SLICES * dz + 1e-3
        return cls(idx * np.asarray(spacing_full)[None, :] - np.array([0.0, *offset_mm])[None, :], dz,
                   (reach_z, METAL_REACH_MM))

    def near(self, z: int, centre_mm: np.ndarray) -> bool:
        d = self.zyx_mm
        return bool(np.any((np.abs(d[:, 0] - z * self.dz_mm) <= self.reach_mm[0])
                           & (np.hypot(d[:, 1] - centre_mm[0], d[:, 2] - centre_mm[1]) <= self.reach_mm[1])))


def calibre_held_fit(ctx: _Ctx, z: int, start_mm: np.ndarray, calibre_mm: float, *,
                     min_hits: float = 0.35) -> _Fit | None:
    """The tube on slice ``z`` near ``start_mm`` with its radius held at ``calibre_mm`` (the track's
    radius over its last slices, mm), or None where fewer than ``min_hits`` of its rays end on
    that wall (round 13).

    A large tube lying against a soft-tissue mass with no fat plane between them (the aorta below the
    diaphragm, against bowel, pancreas or the crus, on non-contrast CT) is fitted as the merged blob:
    its radius grows within the slice-to-slice tolerance and its centre walks into the mass (dev
    non-contrast seed 6: 12.4 → 19 mm over 16 slices, then ≈ 35 mm forward). The aorta's back and sides
    still end a third or more of the rays on its own wall; with the radius known, those rays alone
    place it."""
    held = _fit_tube(ctx, z, start_mm, calibre_mm, radius_mm=calibre_mm)
    return held if held is not None and held.hit_fraction >= min_hits else None


def needs_calibre_hold(radius_mm: float, rays_mm: np.ndarray, calibre_mm: float, *, gate: float,
                       round_tol: float = 0.15, round_hits: float = 0.9) -> bool:
    """Whether a fit of radius ``radius_mm`` is a tube merged with a neighbour rather than the tube
    itself: wider than (1 + ``gate``) × the track's calibre, with fewer than ``round_hits`` of its
    rays (``rays_mm``, cast from its centre; NaN = no edge) ending within ± ``round_tol`` of its
    radius. A tube that really widens (an aneurysm) stays round, its rays agreeing on the new wall;
    a merged outline is lobulated, or eccentric where the tube's own wall still shows."""
    if not radius_mm > (1.0 + gate) * calibre_mm:
        return False
    rays = np.asarray(rays_mm, float)
    agree = np.isfinite(rays) & (np.abs(rays - radius_mm) <= round_tol * radius_mm)
    return float(agree.mean()) < round_hits


def refit_short_iliac(ctx: _Ctx, fits: dict[int, _Fit], slices, *, gate: float, clean_hits: float = CLEAN_HITS,
                      held_min_hits: float = HELD_MIN_HITS, n_nearest: int = 8,
                      reach_slices: int = 16) -> dict[int, _Fit]:
    """Iliac fits on ``slices`` refitted at the calibre of the clean fits nearest to them.

    An artery lying on muscle ends its rays on fat on one side only; the radius those rays share is
    measured from a centre already pulled towards the fat, and the circle through them is too small
    and pulls the centre further (dev non-contrast seed 7 right common iliac: 5.7–6.5 mm against
    7.5 mm on the clean slices below, centre 1–2 pixels medial). A fit with fewer than
    ``clean_hits`` of its rays on its circle and a radius below (1 − ``gate``) × the median radius
    of the ``n_nearest`` clean fits (hit fraction ≥ ``clean_hits``, within ``reach_slices``) is
    refitted from its centre with the radius held at that calibre (:func:`_fit_tube`), kept when
    more of its rays end on that wall, and at least ``held_min_hits`` (where the artery really
    tapers, the external iliac below the internal's origin, the held circle is not a tube: dev screw
    seed 9 right, 0.50–0.62 of its rays). Interpolated fits (hit fraction 0) are left alone.
    Units: mm (docs/segmentation.md, round 15)."""
    clean = np.array([z for z, f in fits.items() if f.hit_fraction >= clean_hits], int)
    radius = {z: fits[z].radius_mm for z in clean.tolist()}
    out = dict(fits)
    for z in slices:
        f = fits.get(z)
        if f is None or not 0.0 < f.hit_fraction < clean_hits or clean.size == 0:
            continue
        near = clean[np.abs(clean - z) <= reach_slices]
        if near.size < 3:
            continue
        near = near[np.argsort(np.abs(near - z), kind="stable")[:n_nearest]]
        calibre = float(np.median([radius[int(k)] for k in near]))
        if f.radius_mm >= (1.0 - gate) * calibre:
            continue
        held = _fit_tube(ctx, z, f.centre_mm, calibre, radius_mm=calibre)
        if held is not None and held.hit_fraction > f.hit_fraction and held.hit_fraction >= held_min_hits:
            out[z] = held
    return out


def pinned_tube_path(inside: np.ndarray, spacing_yx_mm, start_yx_mm, end_yx_mm, *, radius_mm: float,
                     corridor_mm: float, max_step_mm: float, ring_weight: float = 1.0,
                     smooth_weight: float = 1.0, upsample: int = 2) -> np.ndarray:
    """Centres (n, 2) mm (y, x) of a tube of radius ``radius_mm`` through a stack of axial masks
    ``inside`` (n, y, x) of tube-like tissue, pinned at ``start_yx_mm`` on slice 0 and ``end_yx_mm``
    on slice n − 1, by :func:`slice_minimal_path`.

    Cost = :func:`artery_path_cost` at the tube's own radius with its front term off: 1 − disc
    coverage + ``ring_weight`` × coverage of the ring around the disc (+ 1 off the tissue). The
    iliac path's cost (a 4.5-mm disc with fat in front rewarded) puts a buried 7-mm artery's course
    on its fat-faced front edge; a disc of the artery's calibre is filled only at its centre, and
    the ring makes a tube beside a muscle cheaper than the muscle. Positions farther than
    ``corridor_mm`` from the straight line between the pins cost 10 more (the path always exists).
    The masks are upsampled ``upsample``× (linear) so that the course is not held to whole pixels.
    Units: mm (docs/segmentation.md, round 22)."""
    n = inside.shape[0]
    sy, sx = (float(v) for v in spacing_yx_mm)
    u = int(upsample)
    fine = ndimage.zoom(np.asarray(inside, np.float32), (1, u, u), order=1, grid_mode=True, mode="nearest")
    fs = (sy / u, sx / u)
    cost = artery_path_cost(fine, fs, radius_mm=radius_mm, ring_weight=ring_weight, anterior_weight=0.0)
    # fine pixel j covers coarse coordinate (j + 0.5) / u − 0.5 (grid mode)
    yy = ((np.arange(fine.shape[1]) + 0.5) / u - 0.5) * sy
    xx = ((np.arange(fine.shape[2]) + 0.5) / u - 0.5) * sx
    a, b = np.asarray(start_yx_mm, float), np.asarray(end_yx_mm, float)
    chord = a + (b - a) * np.linspace(0.0, 1.0, n)[:, None]
    off = np.hypot(yy[None, :, None] - chord[:, 0, None, None], xx[None, None, :] - chord[:, 1, None, None])
    cost = np.where(off > corridor_mm, cost + 10.0, cost)
    px = lambda c: (int(np.argmin(np.abs(yy - c[0]))), int(np.argmin(np.abs(xx - c[1]))))  # noqa: E731
    end = px(b)
    # the end is pinned by making every other pixel of the last slice prohibitively expensive
    last = np.full(cost.shape[1:], 1e6)
    last[end] = cost[-1][end]
    cost[-1] = last
    path = slice_minimal_path(cost.astype(np.float32), fs, px(a), max_step_mm=max_step_mm,
                              smooth_weight=smooth_weight)
    return np.column_stack([yy[path[:, 0]], xx[path[:, 1]]])


def disc_tissue_fraction(inside: np.ndarray, spacing_yx_mm, centre_mm: np.ndarray, radius_mm: float,
                         step_mm: float = 0.5) -> float:
    """Fraction (by area) of the disc of ``radius_mm`` around ``centre_mm`` (y, x) that lies on
    ``inside`` (a 2-D bool mask), sampled on the 32 rays every ``step_mm`` (nearest pixel; samples
    weighted by their radius, so that the ring each stands for counts by its area). Unitless, 0–1."""
    r = np.arange(0.5 * step_mm, radius_mm, step_mm)
    if r.size == 0:
        return 1.0
    pts = np.asarray(centre_mm, float)[None, None, :] + r[None, :, None] * _UNIT[:, None, :]
    pts = pts / np.asarray(spacing_yx_mm, float)
    on = ndimage.map_coordinates(np.asarray(inside, np.uint8), [pts[..., 0].ravel(), pts[..., 1].ravel()], order=0,
                                 mode="constant", cval=0).reshape(pts.shape[:2])
    return float((on * r[None, :]).sum() / (r.sum() * _N_RAYS))


def _tube_tissue(ctx: _Ctx, img: np.ndarray, bone: np.ndarray) -> np.ndarray:
    """Voxels of ``img`` an artery's tube may lie on: above the context's tissue edge, not bone, and on
    non-contrast CT below 150 HU (calcium and bone are not the lumen of a non-contrast artery)."""
    inside = (img > ctx.edge_hu) & ~bone
    if not ctx.contrast:
        inside &= img < 150.0
    return inside


def reroute_weak_guided_fits(ctx: _Ctx, fits: dict[int, _Fit], slices, *, max_span_mm: float,
                             corridor_mm: float = WEAK_REROUTE_CORRIDOR_MM, weak_hits: float = WEAK_HITS,
                             clean_hits: float = CLEAN_HITS, max_fill: float = WEAK_REROUTE_MAX_FILL) -> dict[int, _Fit]:
    """Iliac fits on ``slices`` (the minimal path's) that see no tube, moved onto a course re-found
    between the clean fits on either side of them.

    On the path the tracker fits the tube at the path's centre and keeps it when it stays there, so
    where the artery is buried (no fat around it) the fit is the path cost's guess: on the artery's
    fat-faced front edge (dev non-contrast seed 9 left: 3–4 mm anterior) or on a neighbour in front
    (seed 4 left, 6–8 mm). Fits with fewer than 60 % of their rays on their wall are more than 2 mm
    off on 42–75 % of slices (round 21). A fit on ``slices`` with fewer than ``weak_hits`` of its
    rays on its wall (the tracker's interpolated fits, hit fraction 0, excluded) whose nearest clean fits on
    ``slices`` above and below (≥ ``clean_hits``) lie at most ``max_span_mm`` apart, and whose disc at
    the calibre interpolated between them is less than ``max_fill`` tissue (:func:`disc_tissue_fraction`;
    a full disc is a fit inside the tube with a neighbour merged to it, not on its edge), is moved to
    :func:`pinned_tube_path` between those two clean centres (disc of their mean radius, within
    ``corridor_mm`` of the straight line), unless that moves it farther than the clean fits' mean
    radius (then the course has followed an anchor on the vein): the straight line itself was tried
    (round 21) and cut across the artery's bend at the pelvic brim. Radii and core HU are interpolated between the
    clean fits, hit fraction 0 as the tracker's own bridged slices. Units: mm (docs/segmentation.md,
    round 22)."""
    slices = sorted(z for z in set(slices) if z in fits)
    clean = np.array([z for z in slices if fits[z].hit_fraction >= clean_hits], int)
    out = dict(fits)
    if clean.size < 2:
        return out
    dz, sy, sx = (float(v) for v in ctx.spacing)
    routes: dict[tuple[int, int], np.ndarray] = {}
    for z in slices:
        # (hit fraction 0: the tracker's own interpolation across unseen slices, not the path cost's
        # guess; re-routed, it followed a clean anchor on the vein, dev screw seed 11 left)
        if not 0.0 < fits[z].hit_fraction < weak_hits:
            continue
        i = int(np.searchsorted(clean, z))
        if i == 0 or i == clean.size:
            continue
        lo, hi = int(clean[i - 1]), int(clean[i])
        if (hi - lo) * dz > max_span_mm:
            continue
        a, b = fits[lo], fits[hi]
        w = (z - lo) / (hi - lo)
        calibre = a.radius_mm + (b.radius_mm - a.radius_mm) * w
        if disc_tissue_fraction(_tube_tissue(ctx, ctx.img[z], ctx.bone[z]), (sy, sx), fits[z].centre_mm,
                                calibre) >= max_fill:
            continue  # a full disc: the fit is inside the tube, a neighbour merged with it
        if (lo, hi) not in routes:
            r = 0.5 * (a.radius_mm + b.radius_mm)
            half = corridor_mm + 2.0 * r + 2.0
            lo_c = np.minimum(a.centre_mm, b.centre_mm) - half
            hi_c = np.maximum(a.centre_mm, b.centre_mm) + half
            y0, x0 = max(int(np.floor(lo_c[0] / sy)), 0), max(int(np.floor(lo_c[1] / sx)), 0)
            y1 = min(int(np.ceil(hi_c[0] / sy)) + 1, ctx.img.shape[1])
            x1 = min(int(np.ceil(hi_c[1] / sx)) + 1, ctx.img.shape[2])
            zsl = slice(hi, lo - 1 if lo > 0 else None, -1)  # from the upper clean fit down
            img, bone = ctx.img[zsl, y0:y1, x0:x1], ctx.bone[zsl, y0:y1, x0:x1]
            inside = _tube_tissue(ctx, img, bone)
            o = np.array([y0 * sy, x0 * sx])
            path = pinned_tube_path(inside, (sy, sx), b.centre_mm - o, a.centre_mm - o, radius_mm=r,
                                    corridor_mm=corridor_mm, max_step_mm=2.0 + 1.5 * dz)
            routes[(lo, hi)] = path + o
        centre = routes[(lo, hi)][hi - z]
        if np.hypot(*(centre - fits[z].centre_mm)) > 0.5 * (a.radius_mm + b.radius_mm):
            # a weak fit on the artery's edge or on a neighbour touching it lies within one calibre of
            # the artery's centre; a course farther off has followed a clean anchor on the vein (dev
            # non-contrast seed 11 left: 11 mm, round 22)
            continue
        out[z] = _Fit(centre, a.radii_mm + (b.radii_mm - a.radii_mm) * w, calibre, 0.0,
                      a.inside_hu + (b.inside_hu - a.inside_hu) * w)
    return out


def _cap_fit(ctx: _Ctx, z: int, fit: _Fit, r_cap_mm: float, lateral: np.ndarray | None) -> _Fit:
    """``fit`` with its radius capped at ``r_cap_mm``: an artery lying against its vein or a muscle
    has no edge there, so anatomy caps it, and the iliac/femoral artery is the lateral
    (antero-lateral) tube of the pair — the capped circle is moved against that wall."""
    if fit.radius_mm <= r_cap_mm:
        return fit
    centre = fit.centre_mm
    if lateral is not None:
        reach = _cast_rays(ctx, z, centre, 4.0 * r_cap_mm)
        i = int(np.argmax(_UNIT @ lateral))
        b = reach[i]
        if np.isfinite(b) and b > r_cap_mm:
            centre = centre + (b - r_cap_mm) * _UNIT[i]
    return _Fit(centre, np.full(_N_RAYS, r_cap_mm), r_cap_mm, fit.hit_fraction, fit.inside_hu)


def _cap_near(ctx: _Ctx, z: int, fit: _Fit, r_cap_mm: float, pred_mm: np.ndarray, reach_mm: float = 3.0) -> _Fit:
    """``fit`` capped at ``r_cap_mm`` where it has merged with a neighbour (its vein, the psoas,
    the IVC — on non-contrast CT there is no edge between them): the capped disc is put where it
    is most inside the merged region, within ``reach_mm`` of the predicted centre. Which side the
    neighbour lies on varies (the vein medial/posterior, the psoas lateral to the external
    iliac), so the tube's own course decides, not a fixed side."""
    if fit.radius_mm <= r_cap_mm:
        return fit
    sy, sx = ctx.spacing[1:]
    half = reach_mm + r_cap_mm
    y0, y1 = max(int(np.floor((pred_mm[0] - half) / sy)), 0), int(np.ceil((pred_mm[0] + half) / sy)) + 1
    x0, x1 = max(int(np.floor((pred_mm[1] - half) / sx)), 0), int(np.ceil((pred_mm[1] + half) / sx)) + 1
    inside = ((ctx.img[z, y0:y1, x0:x1] > ctx.edge_hu) & ~ctx.bone[z, y0:y1, x0:x1]).astype(np.float32)
    if inside.size == 0:
        return fit
    # disc coverage at every pixel (a normalised disc convolution), minus a pull towards the
    # prediction (a ring term — the free side of the artery in fat — was tried: it helped some
    # phantoms and lost the femoral arteries in others, see docs/segmentation.md)
    cover = ndimage.convolve(inside, _disc_kernel(r_cap_mm / sx), mode="constant")
    yy, xx = np.mgrid[y0:y0 + inside.shape[0], x0:x0 + inside.shape[1]]
    away = np.hypot(yy * sy - pred_mm[0], xx * sx - pred_mm[1])
    score = np.where(away <= reach_mm, cover - 0.02 * away, -np.inf)
    k = np.unravel_index(int(np.argmax(score)), score.shape)
    centre = np.array([(k[0] + y0) * sy, (k[1] + x0) * sx])
    return _Fit(centre, np.full(_N_RAYS, r_cap_mm), r_cap_mm, fit.hit_fraction, fit.inside_hu)


# ----------------------------------------------------------------------------------------------
# the iliac minimal path (non-contrast and CTA): a globally best course below the bifurcation
# ----------------------------------------------------------------------------------------------

def _half_ring_kernel(r_in_px: float, r_out_px: float, towards_yx: tuple[float, float]) -> np.ndarray:
    """Normalised half ring for :func:`scipy.signal.fftconvolve`: convolution mirrors the kernel,
    so its taps are laid out opposite to ``towards_yx`` and the result samples that side."""
    n = int(np.ceil(r_out_px))
    yy, xx = np.mgrid[-n: n + 1, -n: n + 1]
    d = np.hypot(yy, xx)
    k = ((d <= r_out_px) & (d >= r_in_px) & (-(yy * towards_yx[0] + xx * towards_yx[1]) > 0.3 * d)).astype(np.float32)
    return k / k.sum()


def artery_path_cost(inside: np.ndarray, spacing_yx_mm, *, radius_mm: float = 4.5, ring_mm: float = 4.5,
                     ring_weight: float = 0.5, anterior_weight: float = 0.5) -> np.ndarray:
    """Per-pixel cost (≥ 0, low = artery-like) of a stack of axial masks ``inside`` (n, y, x) of
    tube-like tissue (soft tissue, or enhanced lumen on CTA), canonical frame (y grows posterior).

    An iliac artery is a small disc of tissue (radius ``radius_mm``, ≈ external iliac with wall)
    mostly surrounded by fat, and — the cue that tells it from its companion vein — with fat in
    *front*: in the pelvis the iliac and femoral veins lie behind / medial to their arteries, so
    the vein's anterior side touches the artery while the artery's anterior side faces the
    retroperitoneal fat. Cost = 1 − disc coverage + ``ring_weight`` × ring coverage
    (``ring_mm`` wide) + ``anterior_weight`` × coverage of the ring's anterior half, plus 1 off
    the tissue. Measured on a synthetic pair (test): an artery of radius 5 mm in fat with its vein
    (7 mm) touching behind 0.08, that vein's centre 0.43, a muscle's fat-faced edge 0.49, its middle
    1.0, fat 2.0. Kernels are sized by the x spacing (in-plane pixels are square). Units: mm in,
    unitless out.
    """
    sy, sx = (float(s) for s in spacing_yx_mm)
    inside = np.asarray(inside, np.float32)
    r_px, w_px = radius_mm / sx, ring_mm / sx
    disc = _disc_kernel(r_px)
    ring = _disc_kernel(r_px + w_px, r_px + 1.0)
    front = _half_ring_kernel(r_px + 1.0, r_px + w_px, (-1.0, 0.0))
    conv = lambda k: signal.fftconvolve(inside, k[None], mode="same", axes=(1, 2))  # noqa: E731
    cost = 1.0 - conv(disc) + ring_weight * conv(ring) + anterior_weight * conv(front)
    cost += 1.0 - inside
    return np.maximum(cost, 0.0).astype(np.float32)


def slice_minimal_path(cost: np.ndarray, spacing_yx_mm, start_yx: tuple[int, int], *, max_step_mm: float,
                       smooth_weight: float = 1.0) -> np.ndarray:
    """The cheapest path through a stack of slices (dynamic programming, one pixel per slice),
    starting at pixel ``start_yx`` of slice 0 and ending anywhere on the last slice.

    Path cost = Σ ``cost`` of its pixels + ``smooth_weight`` × Σ (step / ``max_step_mm``)² over the
    in-plane steps between consecutive slices, each step ≤ ``max_step_mm``. A global minimum, so a
    few slices where the tube is hidden (touching a vein or a muscle) cannot derail it the way a
    greedy slice-to-slice tracker drifts. Returns (n, 2) pixel indices (y, x) per slice.
    """
    n, ny, nx = cost.shape
    sy, sx = (float(s) for s in spacing_yx_mm)
    ky, kx = int(np.floor(max_step_mm / sy)), int(np.floor(max_step_mm / sx))
    offs = [(oy, ox) for oy in range(-ky, ky + 1) for ox in range(-kx, kx + 1)
            if np.hypot(oy * sy, ox * sx) <= max_step_mm]
    pen = [smooth_weight * (np.hypot(oy * sy, ox * sx) / max_step_mm) ** 2 for oy, ox in offs]
    acc = np.full((ny, nx), np.inf)
    acc[start_yx] = float(cost[0][start_yx])
    back = np.zeros((n, ny, nx), np.int16)
    pad_y, pad_x = ky, kx
    for k in range(1, n):
        padded = np.pad(acc, ((pad_y, pad_y), (pad_x, pad_x)), constant_values=np.inf)
        best = np.full((ny, nx), np.inf)
        arg = np.zeros((ny, nx), np.int16)
        for i, ((oy, ox), p) in enumerate(zip(offs, pen)):
            # predecessor of pixel q is q + (oy, ox) on the previous slice
            cand = padded[pad_y + oy: pad_y + oy + ny, pad_x + ox: pad_x + ox + nx] + p
            better = cand < best
            best[better] = cand[better]
            arg[better] = i
        acc = best + cost[k]
        back[k] = arg
    out = np.zeros((n, 2), int)
    q = np.unravel_index(int(np.argmin(acc)), acc.shape)
    for k in range(n - 1, -1, -1):
        out[k] = q
        if k:
            oy, ox = offs[back[k][q]]
            q = (q[0] + oy, q[1] + ox)
    return out


def follow_large_mass(inside: np.ndarray, spacing_yx_mm, seed: np.ndarray, *, radius_mm: float = 8.0,
                      creep_mm: float = 4.0) -> np.ndarray:
    """A large soft-tissue mass (the psoas) followed slice by slice through a stack of axial masks
    ``inside`` (n, y, x), from the part of slice 0 given by ``seed`` (y, x) bool.

    On each slice the mass is the in-plane opening of ``inside`` by a disc of ``radius_mm`` (what
    holds a ≥ 2 × ``radius_mm`` wide disc: a muscle, not an 8–14-mm artery touching it), kept
    where it is connected to the previous slice's mass dilated by ``creep_mm``, and never more than
    ``creep_mm`` beyond it: a muscle's outline moves a few millimetres per slice, so a neighbour
    merged with it on one slice (no fat plane) cannot be annexed wholesale. Returns a bool stack.
    Units: mm."""
    sy, sx = (float(s) for s in spacing_yx_mm)
    inside = np.asarray(inside, bool)
    disc = _disc_kernel(radius_mm / sx) > 0
    n_creep = max(1, int(round(creep_mm / sx)))
    grow = _disc_kernel(float(n_creep)) > 0
    out = np.zeros(inside.shape, bool)
    prev = np.asarray(seed, bool)
    for k in range(inside.shape[0]):
        opened = ndimage.binary_opening(inside[k], structure=disc)
        near = ndimage.binary_dilation(prev, structure=grow) if k else prev
        lab, _ = ndimage.label(opened)
        keep = np.unique(lab[opened & near])
        cur = np.isin(lab, keep[keep > 0]) & near
        if not cur.any():
            break  # lost: nothing is penalised below rather than something wrong
        out[k] = prev = cur
    return out


def _psoas_seed(inside0: np.ndarray, spacing_yx_mm, c0_px: tuple[float, float], side_sign: float,
                radius_mm: float = 8.0) -> np.ndarray:
    """Slice-0 seed of :func:`follow_large_mass`: the large tissue masses (opening by a disc of
    ``radius_mm``) whose centroid lies ≥ 15 mm behind the iliac seed ``c0_px`` (pixel y, x) and on
    its lateral side — beside the vertebral body, where the psoas lies at the bifurcation; the IVC
    and the iliac veins lie level with or just behind the arteries, in front of the spine."""
    sy, sx = (float(s) for s in spacing_yx_mm)
    opened = ndimage.binary_opening(inside0, structure=_disc_kernel(radius_mm / sx) > 0)
    lab, n = ndimage.label(opened)
    if n == 0:
        return opened
    cen = np.array(ndimage.center_of_mass(opened, lab, np.arange(1, n + 1)))
    ok = ((cen[:, 0] - c0_px[0]) * sy >= 15.0) & (side_sign * (cen[:, 1] - c0_px[1]) * sx >= 0.0)
    return np.isin(lab, np.flatnonzero(ok) + 1)


def iliac_cone_floor_mm(descent_mm, *, min_angle_deg: float = 10.0, reach_mm: float = 45.0,
                        slack_mm: float = 5.0) -> np.ndarray:
    """Least lateral displacement (mm, towards the artery's own side) of an iliac artery's centre
    from its seed at the bifurcation, after ``descent_mm`` of descent along the body's long axis:
    tan(``min_angle_deg``) × min(descent, ``reach_mm``) − ``slack_mm``.

    A common iliac artery leaves the aortic bifurcation towards its own side (typically 20–30° from
    the long axis, less near the split), never back towards the midline, and the external iliac goes
    on laterally to the groin. Measured here:
    the phantom's iliacs ≈ 40°; the real non-contrast scan's courses 3.2 mm lateral after 24 mm and
    7.7–9.3 mm after 30 mm, hence the loose 10° and the 5-mm slack. Negative values allow that much
    medial play near the seed. Units: mm in, mm out."""
    d = np.minimum(np.asarray(descent_mm, float), reach_mm)
    return np.tan(np.radians(min_angle_deg)) * d - slack_mm


def lateral_bone_front_px(bone: np.ndarray, spacing_yx_mm, lateral_mm: np.ndarray, *, min_lateral_mm: float = 50.0,
                          core_radius_mm: float = 12.0) -> np.ndarray:
    """Per slice of a stack of axial bone masks ``bone`` (n, y, x; canonical, y grows posterior),
    the anterior surface (pixel row, float) of the *thick* bone lying ≥ ``min_lateral_mm`` towards
    one side (``lateral_mm``: per column, mm towards that side from the midline), NaN where there is none.

    Thick bone is what holds a disc of ``core_radius_mm``: the femoral head in its acetabulum, the
    acetabular roof, the sacro-iliac joint; the iliac wing and the pubic rami are thinner. The
    front is the core's first row less that radius. The iliac arteries run in front of all of it:
    along the pelvic brim, over the iliopubic eminence and in front of the hip joint to the groin
    (measured: on the real non-contrast scan's reference masks ≥ 4 mm in front on every slice, on
    the phantoms ≥ 3 mm). Units: mm in, pixels out."""
    sy, sx = (float(s) for s in spacing_yx_mm)
    lat = np.asarray(bone, bool) & (np.asarray(lateral_mm)[None, None, :] >= min_lateral_mm)
    ry, rx = int(np.floor(core_radius_mm / sy)), int(np.floor(core_radius_mm / sx))
    yy, xx = np.mgrid[-ry: ry + 1, -rx: rx + 1]
    disc = (yy * sy) ** 2 + (xx * sx) ** 2 <= core_radius_mm ** 2
    core = ndimage.binary_erosion(lat, structure=disc[None]) if lat.any() else lat
    rows = core.any(axis=2)
    first = np.where(rows, np.arange(core.shape[1])[None, :], np.inf).min(axis=1)
    return np.where(np.isfinite(first), first - core_radius_mm / sy, np.nan)


def _iliac_guide(ctx: _Ctx, z0: int, c0_mm: np.ndarray, z_end: int, side: str,
                 r0_mm: float = 5.0) -> dict[int, np.ndarray]:
    """Course of one iliac artery (centre mm per slice, ``z0`` down to ``z_end``) by
    :func:`slice_minimal_path` through :func:`artery_path_cost`, on a crop of the seed's side
    (never across the midline) at ≈ 1.5 mm in-plane. The path is run 20 mm past ``z_end`` so that
    its free end does not bend the kept part. With :data:`USE_PSOAS_HYPOTHESIS` a second course is
    found with the psoas taken out of the tube cue, and the course with the higher
    :func:`path_wall_support` (seed radius ``r0_mm``) is returned (ties: the plain one)."""
    nz, ny, nx = ctx.img.shape
    dz, sy, sx = (float(s) for s in ctx.spacing)
    z_lo = max(0, z_end - int(round(20.0 / dz)))
    if z0 - z_lo < 3:
        return {}
    y0, y1 = max(int((c0_mm[0] - 100.0) / sy), 0), min(int(np.ceil((c0_mm[0] + 40.0) / sy)) + 1, ny)
    lateral = 1.0 if side == "left" else -1.0  # canonical x grows to the patient's left
    xa, xb = c0_mm[1] - lateral * 30.0, c0_mm[1] + lateral * 130.0
    x0, x1 = max(int(min(xa, xb) / sx), 0), min(int(np.ceil(max(xa, xb) / sx)) + 1, nx)
    if y1 - y0 < 3 or x1 - x0 < 3:
        return {}
    zsl = slice(z0, z_lo - 1 if z_lo > 0 else None, -1)
    img = ctx.img[zsl, y0:y1, x0:x1]
    bone = ctx.bone[zsl, y0:y1, x0:x1]
    # the 2-3-pixel arteries of a 3-mm scan need a finer grid for the disc/ring cue
    u = max(1, int(round(min(sy, sx) / 1.5)))
    if u > 1:
        # grid mode: fine pixel j covers coarse coordinate (j + 0.5) / u − 0.5 exactly
        img = ndimage.zoom(img, (1, u, u), order=1, grid_mode=True, mode="nearest")
        bone = ndimage.zoom(bone.astype(np.uint8), (1, u, u), order=0, grid_mode=True, mode="nearest").astype(bool)
    inside = _tube_tissue(ctx, img, bone)
    cost = artery_path_cost(inside, (sy / u, sx / u))
    to_fine = lambda mm, o, s, n: int(np.clip(round((mm / s - o + 0.5) * u - 0.5), 0, n - 1))  # noqa: E731
    start = (to_fine(c0_mm[0], y0, sy, img.shape[1]), to_fine(c0_mm[1], x0, sx, img.shape[2]))
    costs = [cost]
    if USE_PSOAS_HYPOTHESIS:
        # the psoas' fat-faced front edge looks like an artery to the local cue (a disc of tissue
        # with fat in front): where the artery lies between the psoas and its vein with soft
        # tissue in front (real left iliac, 75 mm), the path runs along that edge instead. The
        # psoas is recognised as a whole — a large muscle beside the vertebral body followed down
        # from the bifurcation — and a second course is found with its inside (deeper than 3 mm:
        # its rim may hold a touching artery) counted as not-tube. On the phantoms' lower pelvis
        # the artery lies on the psoas' front with no fat, and there the second course is worse;
        # so both are kept as hypotheses and the one along which the tube's wall is seen on more
        # rays wins (ties: the plain course)
        f_sp = (sy / u, sx / u)
        seed = _psoas_seed(inside[0], f_sp, start, lateral, radius_mm=PSOAS_OPEN_RADIUS_MM)
        psoas = follow_large_mass(inside, f_sp, seed, radius_mm=PSOAS_OPEN_RADIUS_MM, creep_mm=1.5)
        if psoas.any():
            depth = ndimage.distance_transform_edt(psoas, sampling=(1.0, *f_sp))
            costs.append(artery_path_cost(inside & ~(depth > 3.0), f_sp))
    to_mm = lambda p, o, s: (o + (p + 0.5) / u - 0.5) * s  # noqa: E731
    if ILIAC_CONE is not None:
        # on a coarse grid the artery can be buried in fat-free tissue for several slices just
        # below the bifurcation; the cheapest path then jumps onto a small tube in fat beside the
        # midline and never returns. An iliac artery does not go back towards the midline, so
        # positions medial of the cone's floor are made prohibitively expensive (not infinite:
        # the path always exists)
        ang, reach, slack = ILIAC_CONE
        lat_mm = lateral * (to_mm(np.arange(img.shape[2]), x0, sx) - c0_mm[1])
        floor = iliac_cone_floor_mm(np.arange(img.shape[0]) * dz, min_angle_deg=ang, reach_mm=reach,
                                    slack_mm=slack)
        outside = lat_mm[None, None, :] < floor[:, None, None]
        costs = [np.where(outside, c + 10.0, c).astype(np.float32) for c in costs]
    behind = None
    if ILIAC_IN_FRONT_OF_HIP is not None:
        min_lat, core_r, agree_mm, bend_mm = ILIAC_IN_FRONT_OF_HIP
        lat_mm = lateral * (to_mm(np.arange(img.shape[2]), x0, sx) - c0_mm[1])
        front = lateral_bone_front_px(bone, (sy / u, sx / u), lat_mm, min_lateral_mm=min_lat,
                                      core_radius_mm=core_r)
        if np.isfinite(front).any():
            behind = np.arange(img.shape[1])[None, :] > np.nan_to_num(front, nan=np.inf)[:, None]  # (slice, row)
            # the courses with and without the rule are compared above the slices where the
            # artery may have to bend forward to pass the hip
            k_hip = max(int(np.flatnonzero(np.isfinite(front))[0]) - int(round(bend_mm / dz)), 0)
    step_mm = 2.0 + 1.5 * dz
    best, best_wall = {}, -1.0
    for c in costs:
        path = slice_minimal_path(c, (sy / u, sx / u), start, max_step_mm=step_mm)
        if behind is not None and behind[np.arange(len(path)), path[:, 0]].any():
            # in the lower pelvis a path can settle on a small tube in fat behind the artery's
            # true course (where the external iliac, buried in tissue, turns forward to the groin)
            # and end beside or behind the femoral head; the artery passes in front of the hip
            # joint. The course is found again with the positions behind the front of the thick
            # lateral bone made prohibitively expensive, and kept only when it agrees with the
            # first (within ``agree_mm``) down to ``bend_mm`` above the hip: the rule is to move
            # the course's lower end, not to send the whole course elsewhere (on a screw phantom
            # it did)
            hip = slice_minimal_path(np.where(behind[:, :, None], c + 10.0, c).astype(np.float32), (sy / u, sx / u), start,
                                     max_step_mm=step_mm)
            apart_mm = np.hypot((hip[:k_hip, 0] - path[:k_hip, 0]) * sy / u, (hip[:k_hip, 1] - path[:k_hip, 1]) * sx / u)
            if apart_mm.size == 0 or float(apart_mm.max()) <= agree_mm:
                path = hip
        guide = {z0 - k: np.array([to_mm(p[0], y0, sy), to_mm(p[1], x0, sx)]) for k, p in enumerate(path)
                 if z0 - k >= z_end}
        wall = path_wall_support(ctx, guide, r0_mm)
        if wall > best_wall:
            best, best_wall = guide, wall
    return best


def path_wall_support(ctx: _Ctx, guide: dict[int, np.ndarray], r0_mm: float) -> float:
    """Mean over the slices of ``guide`` (centre mm per slice) of the fraction of the 32 rays that
    agree on a wall of the tube fitted at the path's centre (0 where no tube is fitted): a vessel
    with fat or a neighbour's edge around it scores high, a course along a muscle's edge (half the
    rays run on inside the muscle) low. Unitless, 0–1."""
    if not guide:
        return 0.0
    hits = []
    for z, c in guide.items():
        fit = _fit_tube(ctx, z, c, r0_mm)
        hits.append(0.0 if fit is None else fit.hit_fraction)
    return float(np.mean(hits))


class _Tracker:
    """One tube followed slice by slice (see :func:`_track`); :meth:`step` fits the next slice, so
    that several tubes can be followed in lockstep, each kept out of the others' predicted discs."""

    def __init__(self, ctx: _Ctx, z0: int, fit0: _Fit, direction: int, *, r_range_mm: tuple[float, float],
                 max_shift_mm: float, stop: Callable[[int, np.ndarray, "_Fit"], bool] | None = None,
                 metal: "_Metal | None" = None, max_gap_mm: float = 9.0, min_hits: float = 0.45,
                 z_limit: int | None = None, r_cap_mm: float | None = None, min_core_hu: float = -np.inf,
                 guide: dict[int, np.ndarray] | None = None, side: str | None = None,
                 coast_mm: float | None = None, calibre_gate: float | None = None):
        self.guide = guide or {}
        # (aorta) a fit wider than (1 + calibre_gate) × the track's calibre is refitted at the calibre
        self.calibre_gate = calibre_gate
        # a gap longer than ``coast_mm`` is crossed on a held prediction (no velocity extrapolated
        # beyond it, no wider search) and is not bridged by interpolation; None: ``max_gap_mm``,
        # with the prediction and the search growing over the whole gap, metal slices included
        self.coast_limited = coast_mm is not None
        self.coast_mm = max_gap_mm if coast_mm is None else min(coast_mm, max_gap_mm)
        self.side = side
        self.swaps: list[int] = []
        self.ctx, self.direction, self.r_range_mm, self.max_shift_mm = ctx, direction, r_range_mm, max_shift_mm
        self.stop, self.metal, self.max_gap_mm, self.min_hits = stop, metal, max_gap_mm, min_hits
        self.z_limit, self.r_cap_mm, self.min_core_hu = z_limit, r_cap_mm, min_core_hu
        self.fits: dict[int, _Fit] = {}
        self.uncertain: list[int] = []
        self.pending: list[int] = []
        self.on_metal: set[int] = set()
        self.prev = fit0
        self.seed_radius_mm = fit0.radius_mm
        # radii of the last fitted (not interpolated) slices: the track's calibre
        self.recent_radii_mm: list[float] = [fit0.radius_mm]
        self.recent_centres: list[tuple[int, np.ndarray]] = [(z0, fit0.centre_mm)]
        self.velocity = np.zeros(2)
        self.z = z0 + direction
        self.done = False
        self.stopped_at: int | None = None

    def active(self) -> bool:
        nz = self.ctx.img.shape[0]
        if self.done or not (0 <= self.z < nz):
            return False
        return self.z_limit is None or (self.z - self.z_limit) * self.direction <= 0

    def predicted(self) -> tuple[np.ndarray, float]:
        """Centre (mm) and radius expected on the next slice (the guide's centre where given)."""
        if self.z in self.guide:
            return self.guide[self.z], self.prev.radius_mm
        return self.prev.centre_mm + self.velocity * self._reach_slices(), self.prev.radius_mm

    def _reach_slices(self) -> int:
        """Slices the prediction (and the search) has to reach across: 1 + the gap so far, with
        ``coast_mm`` at most 1 + its slices (a buried artery runs on straight, it does not keep turning)."""
        if not self.coast_limited:
            return 1 + len(self.pending)
        return 1 + min(len(self.pending), int(self.coast_mm / self.ctx.spacing[0]))

    def step(self) -> None:
        """Fit the next slice (``self.z``) and advance; sets ``done`` when the track ends."""
        ctx, metal, z = self.ctx, self.metal, self.z
        dz = ctx.spacing[0]
        pred, _ = self.predicted()
        near_metal = metal is not None and metal.near(z, pred)
        if self.stop is not None and not near_metal and self.stop(z, pred, self.prev):
            # (a split seen through metal streaks is no evidence: it is looked for below them)
            self.stopped_at, self.done = z, True
            return
        if near_metal:
            # streaks: no evidence here; carry the prediction on, draw nothing, mark uncertain
            self.on_metal.add(z)
            self.pending.append(z)
            self.z += self.direction
            if len(self.on_metal) * dz > 150.0:
                self.done = True
            return
        prev = self.prev
        if z in self.guide:
            fit = self._guided_fit(z, pred)
            good = fit is not None
            far = min(self.guide) if self.direction < 0 else max(self.guide)
            near_end = GUIDE_END_VEIN_CHECK_MM is not None and abs(z - far) * dz <= GUIDE_END_VEIN_CHECK_MM
            calibre = self.clean_calibre_mm() if good and GUIDE_NARROWING_VEIN_CHECK else None
            narrowed = (calibre is not None and GUIDED_CALIBRE_HOLD is not None
                        and fit.radius_mm < (1.0 - GUIDED_CALIBRE_HOLD) * calibre)
            if (good and self.side is not None and not ctx.contrast and ARTERY_IN_FRONT_CHECK
                    and (near_end or narrowed)):
                # near the groin the path's cue (fat in front of the artery) fails where the artery
                # is buried and its vein, medial-behind it, lies in fat: the path's cheap end pulls
                # it onto the vein a few slices above its end (legs non-contrast seed 2 left, round
                # 16). There two clean tubes side by side are told apart by anatomy (the artery in
                # front / lateral), not by a margin of rays; a buried fit with a small tube in front
                # is left alone (legs seed 7 right wandered off when any tube in front was taken)
                alt = artery_in_front(ctx, z, fit, self.side)
                # mid-course the tube in front must have kept the calibre the fit lost: where the
                # artery itself narrows (common → external iliac) a thin tube in front is a neighbour
                # (dev screw 17 left: 4.2 mm, 14 mm in front, against a calibre of 7.0 mm)
                if (alt is not None and alt.hit_fraction >= max(fit.hit_fraction, CLEAN_HITS)
                        and (near_end or alt.radius_mm >= (1.0 - GUIDED_CALIBRE_HOLD) * calibre)):
                    fit = alt
                    self.swaps.append(z)
                    self.guide = {k: c for k, c in self.guide.items() if (k - z) * self.direction <= 0}
                    if not near_end:
                        # mid-course the path below led on along the vein: it is found again from the
                        # artery (dropped, the free track lost a buried stretch further down)
                        self.guide.update(_iliac_guide(ctx, z, alt.centre_mm, far, self.side, alt.radius_mm))
        else:
            # after a gap longer than ``coast_mm`` only a clean tube of the same calibre picks the
            # track up again (most rays on its wall, not a blob merged with a muscle and capped)
            long_gap = len([p for p in self.pending if p not in self.on_metal]) * dz > self.coast_mm
            # a buried artery either runs on straight (the held prediction, tried first) or keeps
            # the course it had (the slope of its last fits carried over the whole gap): the femoral
            # turning back to the popliteal moves 1.5 mm a slice, 8–12 mm off the held prediction by
            # the time it is seen again (bench legs non-contrast seed 0 left, round 10)
            held = pred
            candidates = [(pred, None)]
            if long_gap and self.coast_limited and COAST_ON_COURSE:
                candidates.append((prev.centre_mm + self._course_mm_per_slice() * (1 + len(self.pending)), None))
            if long_gap and self.coast_limited and REACQUIRE_EXTRA_SEEDS > 0:
                # the search's one seed is the deepest blob near the prediction, on a buried femoral
                # often the muscle beside the artery (legs non-contrast dev seed 2 left, round 11)
                candidates += [(held, c) for c in self._extra_seeds(z, held)]
            for k, (pred, seed) in enumerate(candidates):
                fit, clean = self._free_fit(z, pred, long_gap, seed_mm=seed)
                if clean and k > 0:
                    # a guess off the held line must be a tube that goes on: clean on the next slice
                    # too, near it (one stray tube between the artery and its vein at the knee
                    # otherwise picked up, bench seed 1 left)
                    zn = z + self.direction
                    nxt = self._free_fit(zn, fit.centre_mm, long_gap) if 0 <= zn < ctx.img.shape[0] else (None, False)
                    clean = nxt[1] and np.hypot(*(nxt[0].centre_mm - fit.centre_mm)) <= self.max_shift_mm
                if clean:
                    break
            if fit is not None and self.r_cap_mm is not None:
                fit = _cap_near(ctx, z, fit, self.r_cap_mm, pred)
            min_hits = self.min_hits
            if fit is not None and self.calibre_gate is not None:
                # (aorta) a merged fit is replaced by the tube at the track's calibre, or the slice
                # is a gap (bridged, or the track ends after ``max_gap_mm``)
                # (the larger of the medians over the last 8 and 24 fits: a tube narrowed for a few
                # slices — half a CTA aorta taken for bone beside a large plaque — may widen back)
                w = CALIBRE_WINDOW or 8
                radii = self.recent_radii_mm
                calibre = max(float(np.median(radii[-w:])), float(np.median(radii[-3 * w:])))
                # (rays cast only for a wide fit: most slices of an aorta are not)
                wide = fit.radius_mm > (1.0 + self.calibre_gate) * calibre
                if wide and needs_calibre_hold(fit.radius_mm,
                                               _cast_rays(ctx, z, fit.centre_mm, 2.0 * fit.radius_mm + 4.0),
                                               calibre, gate=self.calibre_gate, round_hits=AORTA_ROUND_HITS):
                    fit = calibre_held_fit(ctx, z, pred, calibre, min_hits=AORTA_HELD_MIN_HITS)
                    clean, min_hits = fit is not None, min(min_hits, AORTA_HELD_MIN_HITS)
            good = (clean and self.r_range_mm[0] <= fit.radius_mm <= self.r_range_mm[1]
                    and abs(fit.radius_mm - prev.radius_mm) <= 0.35 * prev.radius_mm + 1.5
                    and np.hypot(*(fit.centre_mm - pred)) <= self.max_shift_mm * self._reach_slices()
                    and fit.hit_fraction >= min_hits and fit.inside_hu >= self.min_core_hu)
            if good and self.side is not None and not ctx.contrast and ARTERY_IN_FRONT_CHECK:
                # off the guide (groin, thigh) an artery touching its vein can slide onto the larger
                # vein; then its artery is the same-calibre tube in front of / lateral to it
                alt = artery_in_front(ctx, z, fit, self.side)
                if alt is not None and alt.hit_fraction >= fit.hit_fraction + SWAP_MARGIN:
                    fit = alt
                    self.swaps.append(z)
        if not good:
            self.pending.append(z)
            # along a guide the track goes on (the path may find the tube again below); off it, a
            # long run of failures ends the track
            if z not in self.guide and len([p for p in self.pending if p not in self.on_metal]) * dz > self.max_gap_mm:
                self.pending = [p for p in self.pending if p in self.on_metal]
                self.done = True
        else:
            # a short gap between two good fits of a continuous tube is bridged by interpolation;
            # slices on metal, and a longer gap (along a guide), stay uncertain and empty
            n = len(self.pending)
            too_long = len([p for p in self.pending if p not in self.on_metal]) * dz > self.coast_mm
            for p in self.pending:
                if p in self.on_metal or too_long:
                    self.uncertain.append(p)
                    continue
                w = abs(p - (z - self.direction * (n + 1))) / (n + 1)
                self.fits[p] = _Fit(prev.centre_mm + (fit.centre_mm - prev.centre_mm) * w,
                                    prev.radii_mm + (fit.radii_mm - prev.radii_mm) * w,
                                    prev.radius_mm + (fit.radius_mm - prev.radius_mm) * w, 0.0, prev.inside_hu)
            self.pending = []
            step = fit.centre_mm - prev.centre_mm
            if SWAP_NOT_A_STEP and self.swaps and self.swaps[-1] == z:
                # a move from the vein onto the artery beside it is a change of tube, not a step of
                # it. Taken as a step, the 10–13-mm jump was carried on as 6 mm a slice and the next
                # fits went off with it into the muscle (legs non-contrast dev seed 6 left, round 17).
                # The slice counts as no motion (the velocity halves, as after a still slice); zeroing
                # the velocity instead lost the course of an oblique artery on the next slice (dev
                # screw seed 6 left, −0.001)
                step = np.zeros(2)
            self.velocity = 0.5 * self.velocity + 0.5 * np.clip(step, -self.max_shift_mm, self.max_shift_mm)
            self.fits[z] = fit
            self.prev = fit
            self.recent_radii_mm.append(fit.radius_mm)
            self.recent_centres.append((z, fit.centre_mm))
        self.z += self.direction

    def _course_mm_per_slice(self) -> np.ndarray:
        """The track's in-plane course, mm per slice in its direction: the least-squares slope of
        its last :data:`CALIBRE_WINDOW` fitted centres (one wobbling fit does not turn it)."""
        pts = self.recent_centres[-(CALIBRE_WINDOW or 8):]
        if len(pts) < 3:
            return self.velocity
        z = np.array([p[0] for p in pts], float) * self.direction
        c = np.array([p[1] for p in pts])
        zc = z - z.mean()
        return (zc @ (c - c.mean(0))) / (zc @ zc)

    def _extra_seeds(self, z: int, pred: np.ndarray) -> np.ndarray:
        """Further start points near ``pred`` on slice ``z`` (:func:`reseed_candidates`), the one
        :func:`_reseed` gives left out."""
        ctx, r = self.ctx, self.prev.radius_mm
        sy, sx = ctx.spacing[1:]
        half = self.max_shift_mm + r
        y0, x0 = max(int(np.floor((pred[0] - half) / sy)), 0), max(int(np.floor((pred[1] - half) / sx)), 0)
        y1 = min(int(np.ceil((pred[0] + half) / sy)) + 1, ctx.img.shape[1])
        x1 = min(int(np.ceil((pred[1] + half) / sx)) + 1, ctx.img.shape[2])
        if y0 >= y1 or x0 >= x1:
            return np.zeros((0, 2))
        inside = (ctx.img[z, y0:y1, x0:x1] > ctx.edge_hu) & ~ctx.bone[z, y0:y1, x0:x1]
        off = np.array([y0 * sy, x0 * sx])
        pts = reseed_candidates(inside, (sy, sx), pred - off, r, self.max_shift_mm, REACQUIRE_EXTRA_SEEDS + 1) + off
        first = _reseed(ctx, z, pred, r, self.max_shift_mm)
        return np.array([p for p in pts if np.hypot(*(p - first)) > 1e-6]).reshape(-1, 2)[:REACQUIRE_EXTRA_SEEDS]

    def _free_fit(self, z: int, pred: np.ndarray, long_gap: bool,
                  seed_mm: np.ndarray | None = None) -> tuple["_Fit | None", bool]:
        """The tube fitted off the guide near ``pred`` (from ``seed_mm`` where given, else the
        search's seed) and whether it may pick the track up: after a long gap a clean tube of the
        track's radius; for an artery, one that keeps the track's calibre."""
        ctx, prev = self.ctx, self.prev
        seed = _reseed(ctx, z, pred, prev.radius_mm, self.max_shift_mm) if seed_mm is None else seed_mm
        fit = _fit_tube(ctx, z, seed, prev.radius_mm)
        clean = fit is not None and (not long_gap or (
            fit.hit_fraction >= REACQUIRE_MIN_HITS
            and abs(fit.radius_mm - prev.radius_mm) <= REACQUIRE_RADIUS_TOLERANCE * prev.radius_mm))
        if clean and self.coast_limited and CALIBRE_WINDOW is not None and fit.radius_mm > 0.0:
            # an artery buried in muscle is fitted as the muscle's fat-bounded compartment; its
            # radius grows a little on each slice, so the previous slice alone lets the blob creep
            # up and lead the track off (bench legs non-contrast seed 1 right femoral, round 9):
            # the fit must keep the calibre of the track's last slices, else the slice is a gap.
            # A tube whose band reaches the anatomical cap (a common/external iliac) is left to
            # the cap: its swollen fit is the artery merged with its vein, still on course (real
            # non-contrast left iliac in the groin, 0.662 with the cap, 0.656 gated)
            calibre = float(np.median(self.recent_radii_mm[-CALIBRE_WINDOW:]))
            band = REACQUIRE_RADIUS_TOLERANCE * calibre
            if self.r_cap_mm is None or calibre + band < self.r_cap_mm:
                clean = abs(fit.radius_mm - calibre) <= band
        return fit, clean

    def clean_calibre_mm(self) -> float | None:
        """The median radius (mm) of the track's last :data:`CALIBRE_WINDOW` clean fits (≥ :data:`CLEAN_HITS`
        of their rays on their wall), or None before the first."""
        radii = [f.radius_mm for _, f in sorted(self.fits.items(), key=lambda kv: -kv[0] * self.direction)
                 if f.hit_fraction >= CLEAN_HITS][:CALIBRE_WINDOW]
        return float(np.median(radii)) if radii else None

    def _guided_fit(self, z: int, centre_mm: np.ndarray) -> _Fit | None:
        """The tube on slice ``z`` at the guide's centre (a minimal path, :func:`_iliac_guide`):
        refitted there (capped within 1.5 mm of the guide where it merges with its vein or the
        psoas) and kept when it stays on the guide (within half its radius + 1 mm); None where no
        tube is seen there (the path crosses muscle with no fat edge: nothing is drawn)."""
        ctx, prev = self.ctx, self.prev
        fit = _fit_tube(ctx, z, centre_mm, prev.radius_mm)
        if fit is not None and self.r_cap_mm is not None:
            fit = _cap_near(ctx, z, fit, self.r_cap_mm, centre_mm, reach_mm=1.5)
        ref_mm = prev.radius_mm
        if GUIDED_SEED_MIN_RADIUS_MM is not None and not self.fits:
            # the seed may be the crotch of a split blob (2.3 mm at 0.9-mm pixels, seed 4 right):
            # held to it, every fit of the artery on a correct path was refused (round 18)
            ref_mm = max(ref_mm, GUIDED_SEED_MIN_RADIUS_MM)
        elif (GUIDED_SEED_MIN_RADIUS_MM is not None and GUIDED_FLOOR_UNTIL_CLEAN
              and not any(f.hit_fraction >= CLEAN_HITS for f in self.fits.values())):
            # the weak fits just below the seed can shrink as thin (2.3–3.5 mm, a quarter to a half
            # of the rays), and held to them the artery was refused over 25–90 mm of a correct path
            # (dev non-contrast 15 left, screw 11 right, round 24): until the track has a clean fit
            # its reference is floored as its first fit's was (the seed's radius, at least 4 mm)
            ref_mm = max(ref_mm, self.seed_radius_mm, GUIDED_SEED_MIN_RADIUS_MM)
        if (fit is not None and self.r_range_mm[0] <= fit.radius_mm <= self.r_range_mm[1]
                and abs(fit.radius_mm - ref_mm) <= 0.35 * ref_mm + 1.5
                and np.hypot(*(fit.centre_mm - centre_mm)) <= 0.5 * fit.radius_mm + 1.0):
            return fit
        return None

    def result(self) -> tuple[dict[int, _Fit], list[int], int | None]:
        return self.fits, self.uncertain + self.pending, self.stopped_at


def _track(ctx: _Ctx, z0: int, fit0: _Fit, direction: int, **kw) -> tuple[dict[int, _Fit], list[int], int | None]:
    """Follow a tube from slice ``z0`` one slice at a time in ``direction`` (+1 up, −1 down).

    Returns ({slice: fit}, uncertain slices, slice where ``stop`` fired or None). Slices on metal
    or with a failed fit are skipped (predicted centre carried on) and listed as uncertain; the
    track ends after ``max_gap_mm`` of consecutive failures (those trailing slices are dropped).
    Keywords: see :class:`_Tracker`."""
    t = _Tracker(ctx, z0, fit0, direction, **kw)
    while t.active():
        t.step()
    return t.result()


# ----------------------------------------------------------------------------------------------
# seeds
# ----------------------------------------------------------------------------------------------

def _disc_kernel(r_px: float, r_in: float = 0.0) -> np.ndarray:
    n = int(np.ceil(r_px))
    yy, xx = np.mgrid[-n: n + 1, -n: n + 1]
    d = np.hypot(yy, xx)
    k = ((d <= r_px) & (d >= r_in)).astype(np.float32)
    return k / k.sum()


def _spine_reference(bone: np.ndarray, body: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per slice: body centre x (px), anterior edge y (px) of the spine near the midline, and
    whether a spine was seen. The spine is bone within ±25 mm of the midline behind the body centre."""
    nz, ny, nx = bone.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    area = body.sum(axis=(1, 2)).astype(float)
    safe = np.maximum(area, 1)
    cx = (body * xx).sum(axis=(1, 2)) / safe
    cy = (body * yy).sum(axis=(1, 2)) / safe
    band = (np.abs(xx[None] - cx[:, None, None]) * spacing[2] < 25) & (yy[None] > cy[:, None, None] - 10 / spacing[1])
    spine = bone & band
    has = spine.sum(axis=(1, 2)) * spacing[1] * spacing[2] > 150
    ant = np.where(has, np.argmax(spine.any(axis=2), axis=1), -1)
    return cx, ant.astype(float), has


def _find_aorta_seed(ctx: _Ctx, body: np.ndarray, spine_x, spine_ant, has_spine) -> list[tuple[float, int, np.ndarray, float]]:
    """Candidate (score, slice, centre_mm, radius_mm) of the aorta: a disc of tube-like HU with a
    ring of non-tube around it, 10–35 mm across, just in front of (or left of) the vertebral body."""
    nz, ny, nx = ctx.img.shape
    sy, sx = ctx.spacing[1:]
    zs = np.flatnonzero(has_spine)
    if zs.size == 0:
        return []
    inside = ((ctx.img[zs] > ctx.edge_hu) & ~ctx.bone[zs]).astype(np.float32)
    if not ctx.contrast:
        inside *= (ctx.img[zs] < 150)
    cands = []
    yy, xx = np.mgrid[0:ny, 0:nx]
    for r_mm in (8.0, 10.0, 12.0, 14.0):
        disc = _disc_kernel(r_mm / sx)
        ring = _disc_kernel((r_mm + 5.0) / sx, r_mm / sx + 1.0)
        d = signal.fftconvolve(inside, disc[None], mode="same", axes=(1, 2))
        a = signal.fftconvolve(inside, ring[None], mode="same", axes=(1, 2))
        score = d - a
        for j, z in enumerate(zs):
            # prior: the aorta lies within 60 mm in front of the spine's anterior edge, 35 mm
            # right .. 50 mm left of the midline (the thoracic aorta sits beside the body)
            dy = (spine_ant[z] - yy) * sy
            dx = (xx - spine_x[z]) * sx
            prior = (dy > -20) & (dy < 60) & (dx > -35) & (dx < 50) & body[z]
            # the aortic wall lies on (or just in front of / left of) the vertebral body: a bowel
            # loop or the IVC further away loses 0.01 per mm
            off = np.hypot(np.maximum(np.abs(dy - r_mm - 3.0) - 8.0, 0), np.maximum(np.abs(dx - 10.0) - 15.0, 0))
            s = np.where(prior, score[j] - 0.01 * off, -np.inf)
            k = int(np.argmax(s))
            if np.isfinite(s.flat[k]):
                cands.append((float(s.flat[k]), int(z), np.array([k // nx * sy, k % nx * sx]), r_mm))
    cands.sort(key=lambda c: -c[0])
    return cands


def half_depth_mm(rays_mm: np.ndarray) -> float:
    """Half a blob's front-to-back depth (mm) seen from one point: the mean of its anterior and
    posterior ray lengths (each a 3-ray circular mean of :func:`_cast_rays`; endless rays left out).
    NaN where both are endless."""
    q = _N_RAYS // 4
    ends = [rays_mm[[(i - 1) % _N_RAYS, i, (i + 1) % _N_RAYS]] for i in (q, 3 * q)]
    ends = [float(np.nanmean(e)) for e in ends if np.isfinite(e).any()]
    return float(np.mean(ends)) if ends else float("nan")


def blob_has_crotch(rays_left_mm: np.ndarray, rays_right_mm: np.ndarray, middle_half_depth_mm: float) -> bool:
    """Whether a lumen blob wider than deep is two touching tubes rather than one oval.

    Two touching (or overlapping) round lumens are shallowest at their middle, the crotch, where
    the two walls between them notch the lumen: half-way out to either side the blob is deeper
    than there. An oval is deepest at its middle. The aorta's lumen widens into an oval on its last
    slices before it divides; TotalSegmentator's aorta (and the phantom's) runs down to where the
    lumen divides, so such a slice is still the aorta. ``rays_*_mm``: the 32 rays cast from
    half-way between the blob's middle and its lateral edge on either side; ``middle_half_depth_mm``:
    the half-depth at the middle (mm)."""
    sides = [half_depth_mm(rays_left_mm), half_depth_mm(rays_right_mm)]
    return bool(np.all(np.isfinite(sides)) and min(sides) > middle_half_depth_mm)


def _split(ctx: _Ctx, z: int, centre_mm: np.ndarray, r_mm: float, spread: float = 0.45,
           extra_gap_mm: float = 0.0) -> dict[str, _Fit] | None:
    """Two tubes (left, right) below the aortic bifurcation, or None while there is still one:
    small-tube fits started ``spread`` × ``r_mm`` either side of the aortic centre converge to one
    centre inside the aorta, and to two distinct centres once the iliacs have parted.
    ``extra_gap_mm`` > 0: looking far below the last aortic slice (under metal streaks) — the
    starts are moved inside the nearest tube, each fit is capped at the iliac calibre, and the
    tubes may lie that much further apart."""
    fit = _fit_tube(ctx, z, centre_mm, r_mm) if extra_gap_mm == 0.0 else None
    if fit is not None:
        # touching iliacs: one blob, much wider than deep, centred between them
        raw = _cast_rays(ctx, z, fit.centre_mm, 3.0 * r_mm + 4.0)
        raw = np.where(np.isfinite(raw), raw, 3.0 * r_mm + 4.0)
        q = _N_RAYS // 4
        ray = lambda i: float(np.mean(raw[[(i - 1) % _N_RAYS, i, (i + 1) % _N_RAYS]]))  # noqa: E731
        lat_l, lat_r, half_depth = ray(0), ray(2 * q), 0.5 * (ray(q) + ray(3 * q))
        wide = min(lat_l, lat_r) >= 1.6 * half_depth and half_depth < 0.8 * r_mm and 2.0 <= half_depth
        if wide and SPLIT_NEEDS_CROTCH and ctx.contrast:
            # an oval lumen is the aorta's last slice, not two iliacs (round 25). CTA only: the lumen's
            # outline shows the walls between touching iliacs as a notch, while on plain CT the
            # outline is the outer wall, and arteries touching with no fat between show no crotch
            reach = 3.0 * r_mm + 4.0
            wide = blob_has_crotch(_cast_rays(ctx, z, fit.centre_mm + np.array([0.0, 0.5 * lat_l]), reach),
                                   _cast_rays(ctx, z, fit.centre_mm - np.array([0.0, 0.5 * lat_r]), reach),
                                   half_depth)
        if wide:
            h = half_depth

            def mk(c):
                # the crotch between two touching iliacs makes the blob shallow in its middle: the
                # half-depth there underestimates each iliac, so each is refitted on its own
                own = _fit_tube(ctx, z, c, max(h, 0.5 * r_mm))
                if own is not None and 2.0 <= own.radius_mm <= 0.8 * r_mm and np.hypot(*(own.centre_mm - c)) <= h + 2.0:
                    return own
                return _Fit(c, np.full(_N_RAYS, h), h, 1.0, fit.inside_hu)
            return {"left": mk(fit.centre_mm + np.array([0.0, lat_l - h])),
                    "right": mk(fit.centre_mm - np.array([0.0, lat_r - h]))}
    off = np.array([0.0, spread * r_mm])
    starts = [centre_mm + off, centre_mm - off]
    if extra_gap_mm > 0.0:
        # far below the last aortic slice the guess is rough: start inside the nearest tube
        starts = [_reseed(ctx, z, c, 0.5 * r_mm, 0.5 * r_mm + 4.0) for c in starts]
    left = _fit_tube(ctx, z, starts[0], 0.5 * r_mm)
    right = _fit_tube(ctx, z, starts[1], 0.5 * r_mm)
    if left is None or right is None:
        return None
    min_hits = 0.5
    if extra_gap_mm > 0.0:
        # re-acquiring below metal: each iliac may lie against a vein or the psoas with no fat
        # plane (non-contrast), so its fit is capped at the iliac calibre (≈ 0.6 × the aorta)
        # on the lateral side, and fewer rays need to agree
        cap = 0.6 * r_mm
        left = _cap_fit(ctx, z, left, cap, np.array([-0.5, 0.87]))
        right = _cap_fit(ctx, z, right, cap, np.array([-0.5, -0.87]))
        min_hits = 0.35
    gap = float(np.hypot(*(left.centre_mm - right.centre_mm)))
    if (left.centre_mm[1] > right.centre_mm[1] and gap >= 0.9 * (left.radius_mm + right.radius_mm)
            and max(left.radius_mm, right.radius_mm) < 0.8 * r_mm
            and min(left.hit_fraction, right.hit_fraction) >= min_hits
            and 2.0 <= min(left.radius_mm, right.radius_mm) and gap < 3.0 * r_mm + 10.0 + extra_gap_mm):
        return {"left": left, "right": right}
    return None


def _find_and_track_aorta(ctx: _Ctx, body, spine_x, spine_ant, has_spine, metal: _Metal | None):
    """Seed and follow the aorta; returns (fits, uncertain, bifurcation slice, iliac seeds) or None."""
    cands = _find_aorta_seed(ctx, body, spine_x, spine_ant, has_spine)
    dz = ctx.spacing[0]
    found: list = []
    tried: list[int] = []
    for score, z0, c0, r0 in cands:
        if len(tried) >= 6:
            break
        if any(abs(z0 - t) * dz < 20 for t in tried) or score < 0.2:
            continue
        tried.append(z0)
        fit0 = _fit_tube(ctx, z0, c0, r0)
        if fit0 is None or not (5.0 <= fit0.radius_mm <= 22.0) or fit0.hit_fraction < 0.5:
            continue
        split: dict[str, _Fit] = {}

        def stop(z, pred, prev, split=split):
            if has_spine[z] or z < z0:  # the bifurcation lies below the seed
                s = _split(ctx, z, pred, prev.radius_mm)
                if s is not None:
                    split.update(s)
                    return True
            return False

        kw = dict(r_range_mm=(5.0, 22.0), max_shift_mm=3.0 + 0.5 * dz, metal=metal, max_gap_mm=15.0,
                  calibre_gate=AORTA_CALIBRE_GATE)
        up, unc_up, _ = _track(ctx, z0, fit0, +1, **kw)
        down, unc_down, bif = _track(ctx, z0, fit0, -1, stop=stop, **kw)
        if bif is None and AORTA_TAIL_MIN_MM is not None:
            # a track that lost the aorta below its end can bridge the gap onto a short stub of
            # anything within reach (1.0-mm pixels, seed 7: the fat behind the iliacs, 17.5 mm past
            # the bifurcation) and the iliacs are then looked for below that stub
            down = drop_stub_after_gap(down, ctx.spacing[0], min_mm=AORTA_TAIL_MIN_MM)
        fits = {z0: fit0, **up, **down}
        seeds = {k: (bif, v) for k, v in split.items()}
        at_calibre = bif is None or split_at_aortic_calibre(
            {z: f.radius_mm for z, f in fits.items() if z > bif and f.hit_fraction > 0.0})
        if bif is None:
            bif, seeds = _bifurcation_by_radius(ctx, fits, z0, metal)
        if bif is not None:
            fits = {z: f for z, f in fits.items() if z > bif}
        # the aorta lies in front of the spine (its centre at most a little behind the vertebral
        # front, beside the body in the lower thorax); the psoas — another long, round,
        # soft-tissue tube — lies beside and behind it
        dys = [spine_ant[z] * ctx.spacing[1] - f.centre_mm[0] for z, f in fits.items() if has_spine[z]]
        if dys and float(np.median(dys)) < -10.0:
            continue
        # and on or left of the midline (measured +8 to +14 mm on the phantoms and the real scans):
        # the IVC, 25-55 mm to its right, is another long tube in front of the spine, and a track
        # seeded on it can swerve onto the aorta's lower end where the two meet at L4-L5
        dxs = [f.centre_mm[1] - spine_x[z] * ctx.spacing[2] for z, f in fits.items() if has_spine[z]]
        if dxs and float(np.median(dxs)) < -AORTA_MAX_RIGHT_MM:
            continue
        length = len(fits) * dz
        # ≥ 50 mm of tube, or most of a short scan
        if length >= min(50.0, 0.6 * ctx.img.shape[0] * dz):
            unc = sorted(z for z in set(unc_up + unc_down) if bif is None or z > bif)
            found.append((length, (_smooth_track(fits), unc, bif, seeds), at_calibre))
    best = choose_aorta_track(found, dz)
    return None if best is None else best[1]


def choose_aorta_track(found: list, spacing_z_mm: float):
    """The aorta track kept among those followed from several starts, or None when there are none.

    ``found``: (length_mm, (fits, uncertain, bifurcation slice, iliac seeds), split_at_calibre) per
    track, as :func:`_find_and_track_aorta` collects them (``split_at_calibre``: see
    :func:`split_at_aortic_calibre`; true where no split test fired). The longest wins, except where
    another start on the same tube (:func:`same_tube`) shows the bifurcation more reliably."""
    if not found:
        return None
    best = max(found, key=lambda c: c[0])  # the first of equal lengths, as the starts were ranked
    if AORTA_SPLIT_AT_CALIBRE and not best[2]:
        # the longest track split only after it had narrowed into an iliac: another start on the same
        # aorta whose split came at the aorta's calibre wins
        good = [c for c in found if c[2] and c[1][2] is not None and same_tube(c[1][0], best[1][0], spacing_z_mm)]
        if good:
            best = max(good, key=lambda c: c[0])
    if AORTA_PREFER_BOTH_ILIACS and len(best[1][3]) < 2:
        # the longest track can be one that ran on past the bifurcation into a soft-tissue blob of
        # aortic calibre between the iliacs and found one iliac at its end (legs non-contrast dev
        # seed 4, round 17): another start on the same aorta that saw both iliacs part wins
        both = [c for c in found if len(c[1][3]) == 2 and same_tube(c[1][0], best[1][0], spacing_z_mm)]
        if both:
            best = max(both, key=lambda c: c[0])
    return best


def split_at_aortic_calibre(radius_mm_by_slice: dict[int, float], *, n: int = 3,
                            ratio: float = AORTA_NARROWED_RATIO) -> bool:
    """Whether an aorta track still had the aorta's calibre where its split test fired.

    ``radius_mm_by_slice``: the track's fitted radii (mm) above its split, slice → radius (bridged
    slices left out). The two iliacs part from a blob of aortic width: on the 78 tracks that followed
    the aorta to its end from the starts of the 16 plain-CT dev cases (seeds 10–17), the mean radius
    of the ``n`` slices just above the split was 0.81–0.94 × the track's median radius. A track that
    ran on into one iliac (or its vein) is an iliac's width there (0.47 on dev screw seed 15), and
    what it split further down is not the bifurcation. ``ratio``: the narrowing test of
    :func:`_bifurcation_by_radius`."""
    zs = sorted(radius_mm_by_slice)
    if len(zs) < n:
        return True
    last = float(np.mean([radius_mm_by_slice[z] for z in zs[:n]]))
    return bool(last >= ratio * float(np.median(list(radius_mm_by_slice.values()))))


def same_tube(a: dict[int, "_Fit"], b: dict[int, "_Fit"], spacing_z_mm: float, *, min_common_mm: float = 25.0,
              max_apart: float = 0.5) -> bool:
    """Whether two tracks (fits per slice) follow one tube: they share ≥ ``min_common_mm`` of slices
    and their centres lie, in the median over those slices, within ``max_apart`` × the median radius.
    Units: mm (spacing), fraction (``max_apart``)."""
    common = sorted(set(a) & set(b))
    if len(common) * spacing_z_mm < min_common_mm:
        return False
    d = np.median([np.hypot(*(a[z].centre_mm - b[z].centre_mm)) for z in common])
    r = np.median([0.5 * (a[z].radius_mm + b[z].radius_mm) for z in common])
    return bool(d <= max_apart * r)


def drop_stub_after_gap(fits: dict[int, "_Fit"], spacing_z_mm: float, *, min_mm: float) -> dict[int, "_Fit"]:
    """The caudal part of a track, ``fits`` (slice → fit; slices bridged by interpolation carry
    ``hit_fraction`` 0, as :class:`_Tracker` writes them), without a stub at its caudal end: where
    the last run of fitted slices is shorter than ``min_mm`` (mm of z) and shorter than the bridged
    gap just above it, the stub and the gap are dropped — the tube was lost at the gap and the stub
    is whatever lay within reach below it (issue 6, round 17b). Runs separated by missing slices
    (metal streaks) are left alone: below streaks a track is meant to be picked up again."""
    zs = sorted(fits)  # ascending: zs[0] is the caudal end
    runs: list[list[int]] = []  # contiguous runs of fitted (True) / bridged (False) slices, caudal first
    for z in zs:
        kind = fits[z].hit_fraction > 0.0
        if runs and z == runs[-1][-1] + 1 and (fits[runs[-1][0]].hit_fraction > 0.0) == kind:
            runs[-1].append(z)
        else:
            runs.append([z])
    if len(runs) < 2 or fits[runs[1][0]].hit_fraction > 0.0 or runs[1][0] != runs[0][-1] + 1:
        return fits
    stub, gap = runs[0], runs[1]
    if len(stub) * spacing_z_mm < min_mm and len(stub) < len(gap):
        return {z: f for z, f in fits.items() if z > gap[-1]}
    return fits


def seed_on_aortic_plane(seed: _Fit, aorta: _Fit) -> _Fit:
    """An iliac seed found below the aorta's end, moved back onto the aorta's prevertebral plane.

    The common iliacs leave the aorta lying on the same surface (the L4–L5 body) and run down and
    back from there: their back wall is at the aorta's back wall (``aorta``: its last clean fit),
    never well in front of it. A seed whose back wall lies in front of that plane by more than its
    own radius is a tube fitted into a neighbour merged with the artery (dev noncontrast / screw seed
    11: bowel in front of both iliacs, seeds 6.6–11.2 mm off the arteries, in front; truth 2–4 mm
    behind the aorta's centre). It keeps its lateral position, radius and hits; its centre moves
    back until its back wall is on the plane. Units: mm, y grows posterior."""
    back_mm = aorta.centre_mm[0] + aorta.radius_mm
    if seed.centre_mm[0] + seed.radius_mm >= back_mm - seed.radius_mm:
        return seed
    centre = np.array([back_mm - seed.radius_mm, seed.centre_mm[1]])
    return _Fit(centre, seed.radii_mm, seed.radius_mm, seed.hit_fraction, seed.inside_hu)


def split_start_radius_mm(last_radius_mm: float, clean_above_mm: list[float]) -> float:
    """The radius (mm) that sizes the bifurcation split's starts below an aorta track that just ends.

    ``last_radius_mm``: the track's last fit; ``clean_above_mm``: the radii of its clean fits on the
    (up to 8) slices above it. The aorta's last slice is often a partial-volume or merged fit, much
    thinner than the aorta (the anatomy probe, non-contrast seed 41 at 1.15 ×: 8.4 mm against 13.4 mm
    above, on one slice, too few for the narrowing test of :func:`_bifurcation_by_radius`). The split's
    starts, 0.45 × that radius either side, then sit in the crotch between the iliacs, which lie about
    one aortic radius either side (there: 3.8 mm against ≈ 12 mm). Where the last fit is thinner than
    :data:`AORTA_NARROWED_RATIO` × the median of the clean fits above (the narrowing test's ratio and
    window), the aorta's calibre is used."""
    if not clean_above_mm:
        return float(last_radius_mm)
    calibre_mm = float(np.median(clean_above_mm))
    return calibre_mm if last_radius_mm < AORTA_NARROWED_RATIO * calibre_mm else float(last_radius_mm)


def _bifurcation_by_radius(ctx: _Ctx, fits: dict[int, _Fit], z0: int, metal: _Metal | None = None):
    """Where the aorta's track, followed caudally, narrows to an iliac (radius < 0.72 × the aorta
    just above, on three slices; the first iliac slice is where the radius first fell below
    :data:`BIFURCATION_TAPER_RATIO` × the aorta) or swerves away from its course (centre > 0.6 × the aortic
    radius to one side over ≥ 15 mm, still parting) it has slipped into one iliac: that is the
    bifurcation. The other iliac is looked for mirrored about the last aortic centre. When the
    track just ends, two tubes are looked for side by side below its end — below ``metal``
    streaks on the first clear slices, with starts spread wider as the iliacs part. Returns
    (first iliac slice, {side: (slice, fit)})."""
    zs = sorted(fits, reverse=True)  # the whole track: the seed may sit just above the bifurcation
    radius = {z: fits[z].radius_mm for z in zs}
    for i, z in enumerate(zs):
        above = [radius[u] for u in zs[max(0, i - 8): i]]
        below = zs[i: i + 3]
        if len(above) < 3 or len(below) < 3:
            continue
        ref = float(np.median(above))
        narrowed = all(radius[u] < AORTA_NARROWED_RATIO * ref for u in below)
        if narrowed and BIFURCATION_AT_TAPER_START:
            # the narrowing is confirmed three slices on, but the track entered the iliac where its
            # radius first left the aortic calibre: partial-volume slices of the aorta's end and the
            # iliac's start (0.72–0.85 × the aorta) belong to the iliac, as the swerve's start does
            while i > 3 and radius[zs[i - 1]] < BIFURCATION_TAPER_RATIO * ref:
                i -= 1
            z = zs[i]
        if not narrowed:
            # no fat plane between an iliac and its vein/the IVC (non-contrast): the track keeps an
            # aortic calibre but swerves sideways into the iliac — the aorta itself runs nearly
            # straight down its last 20–30 mm, the common iliacs part at ≈ 25–30° from the midline
            # (a leak into a touching organ swerves too, but comes back: an iliac keeps parting
            # from the midline over the next ≥ 15 mm)
            x_ref = float(np.median([fits[u].centre_mm[1] for u in zs[max(0, i - 8): i]]))
            run = zs[i: i + max(3, int(np.ceil(15.0 / ctx.spacing[0])))]
            drift = np.array([fits[u].centre_mm[1] - x_ref for u in run])
            if (len(run) * ctx.spacing[0] >= 15.0 and np.all(np.abs(drift) > 0.6 * ref)
                    and (drift.min() > 0 or drift.max() < 0) and abs(drift[-1]) > abs(drift[0]) + 0.2 * ref):
                # the bifurcation is where the swerve began
                j = i
                while j > 0 and abs(fits[zs[j - 1]].centre_mm[1] - x_ref) > 0.25 * ref:
                    j -= 1
                i, z, narrowed = j, zs[j], True
        if narrowed:
            aorta_c = fits[zs[i - 1]].centre_mm
            followed = fits[z]
            side = "left" if followed.centre_mm[1] > aorta_c[1] else "right"
            other = "right" if side == "left" else "left"
            seeds = {side: (z, followed)}
            for u in zs[i: i + 4]:
                f = fits[u]
                sign = 1.0 if other == "left" else -1.0
                # mirrored about the aortic centre, or right beside the followed iliac
                for x in (2 * aorta_c[1] - f.centre_mm[1], f.centre_mm[1] + sign * 2.2 * f.radius_mm):
                    o = _fit_tube(ctx, u, np.array([f.centre_mm[0], x]), f.radius_mm)
                    if (o is not None and 2.0 <= o.radius_mm < 1.5 * ref
                            and np.hypot(*(o.centre_mm - f.centre_mm)) > 0.8 * (o.radius_mm + f.radius_mm)
                            and sign * (o.centre_mm[1] - f.centre_mm[1]) > 0):
                        cap = min(o.radius_mm, followed.radius_mm * 1.2)
                        seeds[other] = (u, _Fit(o.centre_mm, np.minimum(o.radii_mm, cap), cap, o.hit_fraction,
                                                o.inside_hu))
                        break
                if other in seeds:
                    break
            return z, seeds
    if zs and zs[-1] > 0:
        last = fits[zs[-1]]
        clean_above = [fits[z].radius_mm for z in zs[-9:-1] if fits[z].hit_fraction >= CLEAN_HITS]
        split_r_mm = split_start_radius_mm(last.radius_mm, clean_above)
        # the two tubes are looked for on the 4 slices below the track's end; where the track
        # ended on metal streaks, on the first 4 slices clear of them (within 60 mm): the iliacs
        # are re-acquired below a pedicle screw or a stent rather than given up
        n_clear, u = 0, zs[-1] - 1
        while u >= 0 and n_clear < 4 and (zs[-1] - u) * ctx.spacing[0] <= 60.0:
            if metal is not None and metal.near(u, last.centre_mm):
                u -= 1
                continue
            n_clear += 1
            sp = _split(ctx, u, last.centre_mm, split_r_mm)
            # below streaks the iliacs may have parted further than the bifurcation test expects:
            # they diverge by ≈ 0.5 mm per mm of descent (common iliacs at ≈ 25–30° to the midline)
            drop_mm = (zs[-1] - u) * ctx.spacing[0]
            for spread in (1.0, 1.6, 2.3):
                if sp is not None or drop_mm < 10.0:
                    break
                sp = _split(ctx, u, last.centre_mm, split_r_mm, spread=spread, extra_gap_mm=0.6 * drop_mm)
            if sp is not None:
                if SEED_ON_AORTIC_PLANE and u < zs[-1] - 1:
                    # not split on the first slice below the end: a neighbour merged with the iliacs there,
                    # and the tubes fitted in that blob can sit in the neighbour
                    clean = [z for z in reversed(zs) if fits[z].hit_fraction >= CLEAN_HITS]
                    if clean:
                        sp = {k: seed_on_aortic_plane(v, fits[clean[0]]) for k, v in sp.items()}
                return u, {k: (u, v) for k, v in sp.items()}
            u -= 1
    return None, {}


# ----------------------------------------------------------------------------------------------
# the venous tree and the joint artery/vein tracker of the pelvis
# ----------------------------------------------------------------------------------------------

#: Veins returned beside the arteries (TotalSegmentator v2 names); never scored for calcium.
VEIN_NAMES = ("inferior_vena_cava", "iliac_vena_left", "iliac_vena_right")



def _disc_mask(shape_yx, spacing_yx, discs: list) -> np.ndarray:
    """Pixels (small grid, one slice) inside the given shapes: (centre mm, radius mm) discs, or
    fits (their star-shaped outline)."""
    out = np.zeros(shape_yx, bool)
    sy, sx = spacing_yx
    for d in discs:
        c, radii = (d.centre_mm, d.radii_mm) if isinstance(d, _Fit) else (d[0], np.full(_N_RAYS, float(d[1])))
        r = float(radii.max())
        y0, y1 = max(int(np.floor((c[0] - r) / sy)), 0), min(int(np.ceil((c[0] + r) / sy)) + 1, shape_yx[0])
        x0, x1 = max(int(np.floor((c[1] - r) / sx)), 0), min(int(np.ceil((c[1] + r) / sx)) + 1, shape_yx[1])
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        vy, vx = yy * sy - c[0], xx * sx - c[1]
        pos = np.mod(np.arctan2(vy, vx), 2 * np.pi) / (2 * np.pi) * _N_RAYS
        i0 = np.floor(pos).astype(int) % _N_RAYS
        w = pos - np.floor(pos)
        out[y0:y1, x0:x1] |= np.hypot(vy, vx) <= radii[i0] * (1 - w) + radii[(i0 + 1) % _N_RAYS] * w
    return out


class _Exclusion:
    """Context manager: on slice ``z`` the given discs count as 'not this tube' (like bone) for
    every ray and re-seed, so that a tube followed beside another never steps into it."""

    def __init__(self, ctx: _Ctx, z: int, discs: list[tuple[np.ndarray, float]]):
        self.ctx, self.z, self.discs = ctx, z, discs
        self.saved: np.ndarray | None = None

    def __enter__(self):
        if self.discs and 0 <= self.z < self.ctx.bone.shape[0]:
            self.saved = self.ctx.bone[self.z].copy()
            self.ctx.bone[self.z] |= _disc_mask(self.saved.shape, self.ctx.spacing[1:], self.discs)
        return self

    def __exit__(self, *exc):
        if self.saved is not None:
            self.ctx.bone[self.z] = self.saved
        return False


def _find_ivc_seed(ctx: _Ctx, aorta: dict[int, _Fit], z_lo: int, z_hi: int,
                   min_hu: float = -np.inf) -> tuple[int, _Fit] | None:
    """The inferior vena cava beside the aorta: a soft-tissue (or enhanced) tube whose centre lies
    25–55 mm to the patient's right of the aortic centre (nearer lies the right crus) and within
    ±20 mm front–back of it, on the aortic slices ``z_lo``..``z_hi``; the aorta's own disc is
    excluded. Best ray agreement wins (on CTA: plus the core HU, the enhanced vein first).
    ``min_hu``: lowest core HU (on CTA the IVC enhances, > 60 HU even in the arterial phase, while
    the right crus of the diaphragm — a muscle tube between the aorta and the IVC — does not)."""
    best = None
    sx = ctx.spacing[2]
    for z in range(max(z_lo, 0), z_hi + 1):
        a = aorta.get(z)
        if a is None:
            continue
        for dx in (a.radius_mm + 10.0, a.radius_mm + 18.0, a.radius_mm + 26.0, a.radius_mm + 34.0):
            start = a.centre_mm - np.array([0.0, dx])
            if start[1] < sx:
                continue
            with _Exclusion(ctx, z, [(a.centre_mm, a.radius_mm + 0.5)]):
                fit = _fit_tube(ctx, z, _reseed(ctx, z, start, 8.0, 6.0), 9.0)
            if fit is None:
                continue
            off = a.centre_mm - fit.centre_mm
            if not (25.0 <= off[1] <= 55.0 and abs(off[0]) <= 20.0 and 5.0 <= fit.radius_mm <= 18.0
                    and fit.hit_fraction >= 0.5 and fit.inside_hu >= min_hu):
                continue
            # on CTA the enhanced vein outranks any muscle tube; otherwise the best ray agreement
            score = fit.hit_fraction + (fit.inside_hu / 100.0 if np.isfinite(min_hu) else 0.0)
            if best is None or score > best[0]:
                best = (score, z, fit)
    return None if best is None else (best[1], best[2])


def _companion_vein(ctx: _Ctx, z: int, artery: _Fit, side: str, avoid: list[tuple[np.ndarray, float]]) -> _Fit | None:
    """The vein beside an iliac artery on slice ``z``: a tube at least as wide, posterior and/or
    medial to it (the iliac veins lie behind and inside their arteries), the artery excluded."""
    medial = 1.0 if side == "right" else -1.0  # canonical x grows to the patient's left
    best = None
    for ang in (0.0, 0.5, 1.0):  # posterior … posterior-medial … medial
        u = np.array([np.cos(ang), medial * np.sin(ang)])
        start = artery.centre_mm + (artery.radius_mm + 6.0) * u
        with _Exclusion(ctx, z, [(artery.centre_mm, artery.radius_mm + 0.5), *avoid]):
            fit = _fit_tube(ctx, z, _reseed(ctx, z, start, 6.0, 4.0), 7.0)
        if fit is None:
            continue
        d = fit.centre_mm - artery.centre_mm
        if not (3.0 <= fit.radius_mm <= 14.0 and fit.hit_fraction >= 0.4 and d[0] * 1.0 + medial * d[1] > 0
                and np.hypot(*d) <= artery.radius_mm + fit.radius_mm + 8.0):
            continue
        if best is None or fit.hit_fraction > best.hit_fraction:
            best = fit
    return best


def artery_in_front(ctx: _Ctx, z: int, fit: _Fit, side: str) -> _Fit | None:
    """The tube that the iliac/femoral artery would be if ``fit`` (slice ``z``) had slid onto its
    companion vein: a tube of the same calibre (0.6–1.3 × its radius, ≥ half the rays agreeing)
    touching ``fit`` or at most :data:`ARTERY_IN_FRONT_GAP_MM` from it, in front of it or lateral to
    it, ``fit`` excluded. The veins lie behind /
    medial of their arteries, so a vein has its artery there, while an artery has fat or muscle
    there. None when there is no such tube (the track is taken to be on the artery)."""
    lateral = 1.0 if side == "left" else -1.0  # canonical x grows to the patient's left
    best = None
    for ang in (0.0, 0.5, 1.0):  # anterior … antero-lateral … lateral
        u = np.array([-np.cos(ang), lateral * np.sin(ang)])
        start = fit.centre_mm + (2.0 * fit.radius_mm) * u
        with _Exclusion(ctx, z, [(fit.centre_mm, fit.radius_mm + 0.5)]):
            alt = _fit_tube(ctx, z, _reseed(ctx, z, start, fit.radius_mm, 0.5 * fit.radius_mm), fit.radius_mm)
        if alt is None:
            continue
        d = alt.centre_mm - fit.centre_mm
        if not (0.6 * fit.radius_mm <= alt.radius_mm <= 1.3 * fit.radius_mm and alt.hit_fraction >= 0.5
                and float(d @ np.array([-1.0, 0.0])) + float(d @ np.array([0.0, lateral])) > 0
                and np.hypot(*d) <= fit.radius_mm + alt.radius_mm + ARTERY_IN_FRONT_GAP_MM):
            continue
        if best is None or alt.hit_fraction > best.hit_fraction:
            best = alt
    return best


def _track_pelvis(ctx: _Ctx, vctx: _Ctx, aorta: dict[int, _Fit], bif_z: int | None,
                  iliac_seeds: dict[str, tuple[int, _Fit]], artery_kw: dict, metal: "_Metal | None",
                  notes: list[str]) -> tuple[dict[str, dict[int, _Fit]], dict[str, list[int]]]:
    """Arteries and veins below the aorta, followed together slice by slice (the joint two-tree
    tracker): the IVC is found beside the aorta and followed down to its confluence, where it
    splits into the common iliac veins (or, when the split is not seen, each iliac vein is picked
    up behind/inside its artery); on every slice the veins are fitted first with the arteries'
    predicted discs (and the aorta) excluded, then the arteries with the veins' fitted outlines
    excluded, so that an iliac artery lying against its vein with no fat plane cannot slide into
    it — a single tracker there follows the larger vein. (Excluding the veins' *predicted* discs
    from the arteries was measured to lose more arterial slices than it saved: a flat vein's disc
    covers its artery.) ``ctx``: the arteries' context
    (CTA: half-lumen edge); ``vctx``: the veins' (the fat edge). Returns ({name: fits}, {name:
    uncertain slices})."""
    fits: dict[str, dict[int, _Fit]] = {}
    unc: dict[str, list[int]] = {}
    dz = ctx.spacing[0]
    zs = sorted(aorta)
    if not zs:
        return fits, unc
    # the IVC: seeded on the lowest 80 mm of the aorta above the bifurcation, followed up the aorta
    z_low = bif_z + 1 if bif_z is not None else zs[0]
    vein_kw = dict(r_range_mm=(3.0, 20.0), max_shift_mm=3.0 + 0.5 * dz, metal=metal, max_gap_mm=9.0, min_hits=0.4,
                   min_core_hu=60.0 if ctx.contrast else -np.inf)
    seed = _find_ivc_seed(vctx, aorta, z_low, min(z_low + int(80.0 / dz), zs[-1]), min_hu=vein_kw["min_core_hu"])
    trackers: dict[str, _Tracker] = {}
    split_at: list = [None]
    if seed is None:
        notes.append("inferior vena cava not found beside the aorta")
    else:
        z_ivc, f_ivc = seed
        up = _Tracker(vctx, z_ivc, f_ivc, +1, z_limit=zs[-1], **vein_kw)
        while up.active():
            a = aorta.get(up.z)
            with _Exclusion(vctx, up.z, [(a.centre_mm, a.radius_mm + 0.5)] if a is not None else []):
                up.step()
        f_up, u_up, _ = up.result()
        fits["inferior_vena_cava"] = {z_ivc: f_ivc, **f_up}
        unc["inferior_vena_cava"] = list(u_up)

        def confluence(z, pred, prev):
            if bif_z is None or z >= bif_z:
                return False
            s = _split(vctx, z, pred, prev.radius_mm)
            if s is not None:
                split_at[0] = (z, s)
                return True
            return False

        trackers["inferior_vena_cava"] = _Tracker(vctx, z_ivc, f_ivc, -1, stop=confluence, **vein_kw)
    for side, (z0, f0) in iliac_seeds.items():
        name = f"iliac_artery_{side}"
        trackers[name] = _Tracker(ctx, z0, f0, -1, **{**artery_kw[side], "metal": metal})
        fits[name] = {z0: f0}
    z = max([t.z for t in trackers.values()], default=-1)
    veins_seeded = False
    while z >= 0 and any(t.active() for t in trackers.values()):
        # veins first, kept out of the arteries' predicted discs (an artery is round and its
        # prediction good); then the arteries, kept out of the veins' outlines just fitted (a
        # flat vein's predicted disc would cover its artery)
        order = [n for n in trackers if "ven" in n] + [n for n in trackers if n.startswith("iliac_artery")]
        done_here: dict[str, _Fit] = {}
        for name in order:
            t = trackers[name]
            if not t.active() or t.z != z:
                continue
            discs = []
            a = aorta.get(z)
            if a is not None:
                discs.append((a.centre_mm, a.radius_mm + 0.5))
            for other, o in trackers.items():
                if other == name:
                    continue
                if other in done_here:
                    o_fit = done_here[other]
                    if "ven" in other and "ven" not in name and VEIN_RIM_MM > 0:
                        # a vein touching its artery with no fat plane is fitted with rays that run
                        # on into the artery, so its outline is too wide on that side: the artery
                        # keeps the contested rim (without it, the real left iliac was squeezed off
                        # its track by the vein's outline in the groin, docs/segmentation.md round 4)
                        o_fit = _Fit(o_fit.centre_mm, np.maximum(o_fit.radii_mm - VEIN_RIM_MM, 0.5 * o_fit.radii_mm),
                                     o_fit.radius_mm, o_fit.hit_fraction, o_fit.inside_hu)
                    discs.append(o_fit)
                elif o.active() and o.z == z and "ven" not in other:
                    discs.append(o.predicted())
            c = vctx if "ven" in name else ctx
            with _Exclusion(c, z, discs):
                t.step()
            if z in t.fits:
                done_here[name] = t.fits[z]
        ivc = trackers.get("inferior_vena_cava")
        if (not veins_seeded and bif_z is not None and z < bif_z and (ivc is None or ivc.done)
                and any(n.startswith("iliac_artery") for n in done_here)):
            # below the confluence: the IVC's two halves, or each artery's companion vein (looked
            # for on every slice down to 40 mm below the bifurcation until both are found)
            if split_at[0] is not None and split_at[0][0] == z:
                starts = dict(split_at[0][1])
            else:
                starts = {}
                for side in ("left", "right"):
                    if f"iliac_vena_{side}" in trackers:
                        continue
                    art = done_here.get(f"iliac_artery_{side}")
                    if art is not None:
                        others = [(f.centre_mm, f.radius_mm) for n, f in done_here.items()
                                  if n != f"iliac_artery_{side}"]
                        comp = _companion_vein(vctx, z, art, side, others)
                        if comp is not None:
                            starts[side] = comp
            for side, f in starts.items():
                trackers[f"iliac_vena_{side}"] = _Tracker(vctx, z, f, -1, **vein_kw)
                fits[f"iliac_vena_{side}"] = {z: f}
                at_split = split_at[0] is not None and split_at[0][0] == z
                notes.append(f"iliac vein {side} found {'at the IVC confluence' if at_split else 'beside its artery'}")
            veins_seeded = (all(f"iliac_vena_{s_}" in trackers for s_ in ("left", "right"))
                            or (bif_z - z) * dz > 40.0)
        z -= 1
    for name, t in trackers.items():
        f, u, _ = t.result()
        fits.setdefault(name, {}).update(f)
        unc.setdefault(name, []).extend(u)
    ivc = fits.get("inferior_vena_cava", {})
    if bif_z is not None and "iliac_vena_left" not in fits and "iliac_vena_right" not in fits and len(ivc) >= 6:
        # no split seen: the IVC track ran on down one common iliac vein. Its confluence is found
        # like the aortic bifurcation (narrowing, or a swerve away from its straight course); the
        # part below is that iliac vein, and the other one is followed from beside it
        conf, vseeds = _bifurcation_by_radius(vctx, ivc, max(ivc), None)
        if conf is not None and conf < bif_z + int(round(20.0 / dz)):
            followed = next((k for k, (zz, _) in vseeds.items() if zz == conf and ivc.get(zz) is vseeds[k][1]), None)
            below = {z: f for z, f in ivc.items() if z <= conf}
            fits["inferior_vena_cava"] = {z: f for z, f in ivc.items() if z > conf}
            if followed is not None:
                fits[f"iliac_vena_{followed}"] = below
            for side, (z0, f0) in vseeds.items():
                if side == followed:
                    continue
                t = _Tracker(vctx, z0, f0, -1, **vein_kw)
                while t.active():
                    discs = [(g[t.z].centre_mm, g[t.z].radius_mm) for n, g in fits.items()
                             if n != f"iliac_vena_{side}" and t.z in g]
                    with _Exclusion(vctx, t.z, discs):
                        t.step()
                f_s, u_s, _ = t.result()
                fits[f"iliac_vena_{side}"] = {z0: f0, **f_s}
                unc[f"iliac_vena_{side}"] = list(u_s)
            notes.append(f"IVC confluence at canonical slice {conf}: iliac veins {', '.join(sorted(vseeds)) or 'none'}")
    return fits, unc


def enhanced_min_mm3(z_mm: float) -> float:
    """Enhanced volume (mm³) a scan covering ``z_mm`` of z needs before the CTA hypothesis is tried:
    :data:`ENHANCED_MIN_MM3`, or :data:`ENHANCED_MIN_MM3_PER_MM` × ``z_mm`` where that is less (a
    short scan holds too little enhanced tissue to pass an absolute volume, issue 6 round 17b)."""
    if ENHANCED_MIN_MM3_PER_MM is None:
        return ENHANCED_MIN_MM3
    return min(ENHANCED_MIN_MM3, ENHANCED_MIN_MM3_PER_MM * float(z_mm))


def _enhanced_volume_mm3(small: np.ndarray, body: np.ndarray, spacing) -> float:
    """Volume (mm³) of homogeneous bright tissue: 150–700 HU with a local (3×3×3) SD < 40 HU —
    contrast-filled blood and enhancing organs. Marrow is textured, cortex brighter; a
    non-contrast scan has almost none of it."""
    # every other slice is plenty for a volume estimate and halves the cost
    sub = small[::2]
    m = ndimage.uniform_filter(sub, 3)
    sd = np.sqrt(np.maximum(ndimage.uniform_filter(sub * sub, 3) - m * m, 0.0))
    bright = (sd < 40.0) & (sub > 150.0) & (sub < 700.0) & body[::2]
    return float(bright.sum()) * 2.0 * float(np.prod(spacing))


def _core_sd(small: np.ndarray, fits: dict[int, _Fit], spacing) -> float:
    """Median over slices of the HU standard deviation in the central half-radius of the tube:
    contrast-filled blood is even (noise only), trabecular bone is textured."""
    sds = []
    for z, f in fits.items():
        yi, xi = np.round(f.centre_mm / spacing[1:]).astype(int)
        k = max(1, int(0.5 * f.radius_mm / spacing[1]))
        core = small[z, max(yi - k, 0): yi + k + 1, max(xi - k, 0): xi + k + 1]
        if core.size >= 4:
            sds.append(float(core.std()))
    return float(np.median(sds)) if sds else float("inf")


def _femoral_level(bone: np.ndarray, spacing, spine_x, bif_z: int) -> int | None:
    """Slice of the top of the femoral heads (the iliac → femoral boundary, at the inguinal
    ligament): the most cranial slice below the bifurcation where lateral bone (> 50 mm from the
    midline) is ≥ 30 mm thick — the femoral head in its acetabulum; the iliac wings are thinner."""
    if bif_z <= 0:
        return None
    sub = bone[:bif_z]
    nz, ny, nx = sub.shape
    xx = np.arange(nx)[None, None, :]
    lateral = sub & (np.abs(xx - spine_x[:bif_z, None, None]) * spacing[2] > 50)
    if not lateral.any():
        return None
    # thickness ≥ 30 mm ⇔ the mask survives an in-plane erosion by 15 mm (a box, cheap and separable)
    ky = max(1, int(round(15.0 / spacing[1])))
    kx = max(1, int(round(15.0 / spacing[2])))
    cols = np.flatnonzero(lateral.any(axis=(0, 1)))
    rows = np.flatnonzero(lateral.any(axis=(0, 2)))
    crop = lateral[:, max(rows[0] - ky, 0): rows[-1] + ky + 1, max(cols[0] - kx, 0): cols[-1] + kx + 1]
    core = ndimage.minimum_filter(crop.astype(np.uint8), size=(1, 2 * ky + 1, 2 * kx + 1), mode="constant")
    zs = np.flatnonzero(core.any(axis=(1, 2)))
    if zs.size == 0:
        return None
    # the thick bone starts at the acetabular roof, ≈ 20–30 mm above the femoral head's top; the
    # iliac → femoral boundary (inguinal ligament) is taken at the head's centre, ≈ 45 mm lower
    z = int(zs.max()) - int(round(45.0 / spacing[0]))
    return z if z > 0 else None


def pubic_symphysis_top(bone: np.ndarray, body: np.ndarray, spacing_mm, *, below_z: int,
                        half_width_mm: float = 12.0, min_area_mm2: float = 60.0,
                        front_mm: float = 25.0, cap_mm: float | None = 5.0) -> int | None:
    """Most cranial slice (< ``below_z``) of the pubic symphysis: bone within ±``half_width_mm``
    of the body's centre line and ≥ ``front_mm`` in front of the body's centre, over ≥
    ``min_area_mm2`` on two consecutive slices, then followed up through the bone's rounded top
    (up to ``cap_mm``; None: not followed): a slice above holding any such bone that overlaps the
    slice below's (in-plane, ± 1 pixel) is still the symphysis — its partial-volume cap, under
    ``min_area_mm2``. In the pelvis the only midline bone well in front of
    the body's centre is the pubis (the sacral promontory reaches the centre, the coccyx lies
    behind it; a prostate calcification is far smaller). Used as the
    iliac → femoral boundary (the inguinal ligament's medial end, the pubic tubercle, lies at the
    symphysis' upper border; docs/segmentation.md, "iliac/femoral boundary"). ``bone``/``body``:
    boolean (z, y, x) in the canonical frame (axis 0 superior, axis 1 posterior); ``spacing_mm``:
    (dz, dy, dx). Returns the slice index, or None when no symphysis is in the scan."""
    below_z = int(min(below_z, bone.shape[0]))
    if below_z <= 1:
        return None
    b, bd = bone[:below_z], body[:below_z]
    nz, ny, nx = b.shape
    yy, xx = np.mgrid[0:ny, 0:nx]
    area = np.maximum(bd.sum(axis=(1, 2)), 1).astype(float)
    cx = (bd * xx).sum(axis=(1, 2)) / area
    cy = (bd * yy).sum(axis=(1, 2)) / area
    front_mid = ((np.abs(xx[None] - cx[:, None, None]) * spacing_mm[2] <= half_width_mm)
                 & (yy[None] < cy[:, None, None] - front_mm / spacing_mm[1]))
    found = (b & front_mid).sum(axis=(1, 2)) * spacing_mm[1] * spacing_mm[2] >= min_area_mm2
    found &= bd.any(axis=(1, 2))
    # two consecutive slices: one noisy slice (a calcified node, a phlebolith) does not count
    pair = found[1:] & found[:-1]
    zs = np.flatnonzero(pair)
    if not zs.size:
        return None
    top = int(zs.max()) + 1
    if cap_mm is not None:
        # the detection threshold stops one or two slices under a rounded bone's top: the knee-length
        # phantoms' symphysis holds 160 mm² on its last detected slice and 40–44 mm² on the slice above,
        # so the boundary was found a slice low there (round 17, issue 6). Only bone touching the
        # slice below counts, and only over a few mm: the cap, not a structure resting on it
        grow = ndimage.generate_binary_structure(2, 2)
        k_max = top + int(np.floor(cap_mm / float(spacing_mm[0]) + 1e-9))
        while top + 1 < below_z and top + 1 <= k_max:
            below = ndimage.binary_dilation(b[top] & front_mid[top], structure=grow)
            if not (b[top + 1] & front_mid[top + 1] & below).any():
                break
            top += 1
    return top


def _visceral_origins(ctx: _Ctx, aorta: dict[int, _Fit], out: np.ndarray, spacing_full, offset_mm, grow_mm: float,
                      notes: list[str]) -> None:
    """Origins (first ~12 mm) of the celiac trunk, SMA and renal arteries on CTA: bright offshoots
    of the aortic lumen, anterior (celiac = the most cranial, SMA = the next) and lateral (renals)."""
    found: dict[str, list[tuple[int, int, float]]] = {}
    zs = sorted(aorta)
    for z in zs:
        fit = aorta[z]
        r = _cast_rays(ctx, z, fit.centre_mm, fit.radius_mm + 15.0)
        long = ~np.isfinite(r) | (r > fit.radius_mm + 6.0)
        for i in np.flatnonzero(long):
            ang = _ANGLES[i]
            if abs(ang - 1.5 * np.pi) <= np.pi / 5:
                found.setdefault("anterior", []).append((z, i, fit.radius_mm))
            elif ang <= np.pi / 4 or ang >= 1.75 * np.pi:
                found.setdefault("left", []).append((z, i, fit.radius_mm))
            elif abs(ang - np.pi) <= np.pi / 4:
                found.setdefault("right", []).append((z, i, fit.radius_mm))

    def groups(items):
        zs_ = sorted({z for z, _, _ in items}, reverse=True)
        out_g, cur = [], []
        for z in zs_:
            if cur and cur[-1] - z > 2:
                out_g.append(cur)
                cur = []
            cur.append(z)
        if cur:
            out_g.append(cur)
        return [g for g in out_g if len(g) * ctx.spacing[0] <= 15.0]  # a branch origin is short in z

    named: dict[str, list[int]] = {}
    ant = groups(found.get("anterior", []))
    if ant:
        named["celiac_trunk"] = ant[0]
        if len(ant) > 1:
            named["superior_mesenteric_artery"] = ant[1]
    for side in ("left", "right"):
        g = groups(found.get(side, []))
        if g:
            named[f"renal_artery_{side}"] = g[0]
    for name, zlist in named.items():
        key = {"celiac_trunk": "anterior", "superior_mesenteric_artery": "anterior"}.get(name, name.rsplit("_", 1)[-1])
        for z, i, r_a in found[key]:
            if z not in zlist:
                continue
            fit = aorta[z]
            for t in np.arange(r_a, r_a + 12.0, 1.0):
                c = fit.centre_mm + t * _UNIT[i]
                blob = _Fit(c, np.full(_N_RAYS, 2.5), 2.5, 1.0, 0.0)
                _draw(out, _ID[name], z, blob, grow_mm, spacing_full, offset_mm)
    notes.append("visceral origins found: " + (", ".join(sorted(named)) or "none"))


# ----------------------------------------------------------------------------------------------
# drawing at full resolution
# ----------------------------------------------------------------------------------------------

def _draw(out: np.ndarray, label: int, z_full: int, fit: _Fit, grow_mm: float, spacing_full, origin_offset_mm) -> None:
    """Paint the star-shaped outline (radii + ``grow_mm``) of ``fit`` into slice ``z_full``."""
    sy, sx = spacing_full
    c = fit.centre_mm + origin_offset_mm
    rmax = float(fit.radii_mm.max()) + grow_mm + 1.0
    y0, y1 = int(np.floor((c[0] - rmax) / sy)), int(np.ceil((c[0] + rmax) / sy)) + 1
    x0, x1 = int(np.floor((c[1] - rmax) / sx)), int(np.ceil((c[1] + rmax) / sx)) + 1
    ny, nx = out.shape[1:]
    y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, ny), min(x1, nx)
    if y0 >= y1 or x0 >= x1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    vy, vx = yy * sy - c[0], xx * sx - c[1]
    ang = np.mod(np.arctan2(vy, vx), 2 * np.pi)
    pos = ang / (2 * np.pi) * _N_RAYS
    i0 = np.floor(pos).astype(int) % _N_RAYS
    w = pos - np.floor(pos)
    rad = fit.radii_mm[i0] * (1 - w) + fit.radii_mm[(i0 + 1) % _N_RAYS] * w + grow_mm
    inside = np.hypot(vy, vx) <= rad
    win = out[z_full, y0:y1, x0:x1]
    win[inside & (win == 0)] = label


# ----------------------------------------------------------------------------------------------
# the public function
# ----------------------------------------------------------------------------------------------

def segment_vessels(volume: Volume, *, bones: np.ndarray | None = None, body: np.ndarray | None = None,
                    contrast: bool | None = None) -> VesselResult:
    """Aorta, iliac and femoral arteries (lumen + wall) of a CT or CTA, model-free.

    ``bones``/``body``: optional boolean masks on the volume's grid (e.g. from
    :mod:`vascalc.anatomy.builtin.landmarks`); a threshold skeleton/body is made when missing.
    ``contrast``: force CTA (True) or non-contrast (False) handling; None = detect (aortic lumen
    median > 120 HU). Returns :class:`VesselResult`; see the module docstring for the method.
    Renal, celiac and SMA origins are looked for on CTA only (bright offshoots of the aortic wall).
    """
    t0 = time.perf_counter()
    notes: list[str] = []
    grid = volume.grid
    if min(grid.shape) < 3:
        raise InputError(f"a 3-D CT with at least 3 slices per axis is needed, got shape {grid.shape}")
    perm, flips = _canonical_frame(grid.direction_matrix)
    hu = _to_canonical(volume.hu, perm, flips)
    nz = hu.shape[0]
    # canonical slice (superior = high) → index along the volume's own slice axis, for the user
    to_index = (lambda z: nz - 1 - z) if flips[0] else (lambda z: z)  # noqa: E731
    sp_full = np.asarray(grid.spacing_mm, float)[list(perm)]
    f = max(1, int(round(2.0 / float(min(sp_full[1], sp_full[2])))))
    small = _block_mean(hu, f)
    sp = sp_full * np.array([1.0, f, f])
    # block centre of small pixel i sits at full-res index i*f + (f-1)/2
    offset_mm = np.array([(f - 1) / 2 * sp_full[1], (f - 1) / 2 * sp_full[2]])
    if bones is not None:
        if bones.shape != volume.shape:
            raise InputError(f"bones mask shape {bones.shape} does not match the volume {volume.shape}")
        bone_c = _to_canonical(np.asarray(bones, bool), perm, flips)
        bone_small = _block_mean(bone_c, f) > 0.25 if f > 1 else bone_c.copy()
        bone_cta = bone_small
    else:
        bone_small = threshold_bones(small, sp)
        bone_cta = threshold_bones(small, sp, cortex_hu=400.0)
        notes.append("bones: threshold skeleton (HU > 180, components > 3 cm³; for CTA only near HU > 400 cortex)")
    if body is not None:
        if body.shape != volume.shape:
            raise InputError(f"body mask shape {body.shape} does not match the volume {volume.shape}")
        body_small = _block_mean(_to_canonical(np.asarray(body, bool), perm, flips), f) > 0.5
    else:
        body_small = threshold_body(small)
    # light smoothing against noise; 3-mm pixels are smooth enough already (thin fat planes
    # between the aorta and its neighbours would be blurred away)
    sigma = (0.0, 1.0 / sp[1], 1.0 / sp[2])
    img = ndimage.gaussian_filter(small, sigma=sigma) if sigma[1] >= 0.45 else small
    metal = _Metal.find(hu, sp_full, offset_mm)
    bone_plain = bone_small

    # contrast: try CTA first when not forced (a bright round aorta is unmistakable)
    results = None
    if contrast is None:
        # a CTA is tried when the scan is tagged with a contrast agent or is visibly enhanced
        tagged = bool(volume.info.contrast_agent)
        # marrow inside a cortical shell (femurs, pelvis, sacrum: most of it in a knee-length scan)
        # is homogeneous and bright too but is no evidence of contrast, so the CTA skeleton is left out
        # (an untagged short CTA holds too little to pass an absolute volume: the need scales with
        # the z the estimate covers — every other slice, counted twice)
        z_mm = 2.0 * ((small.shape[0] + 1) // 2) * sp[0]
        enhanced = tagged or _enhanced_volume_mm3(small, body_small & ~bone_cta, sp) >= enhanced_min_mm3(z_mm)
        hypotheses = [True, False] if enhanced else [False]
    else:
        hypotheses = [contrast]
    for is_contrast in hypotheses:
        edge = CONTRAST_LUMEN_HU if is_contrast else FAT_EDGE_HU
        bone_small = bone_cta if is_contrast else bone_plain
        spine_x, spine_ant, has_spine = _spine_reference(bone_small, body_small, sp)
        ctx = _Ctx(img, bone_small, sp, bool(is_contrast), edge)
        aorta = _find_and_track_aorta(ctx, body_small, spine_x, spine_ant, has_spine, metal)
        if aorta is None:
            continue
        lumen = float(np.median([a.inside_hu for a in aorta[0].values()]))
        if contrast is None and is_contrast and (lumen <= CONTRAST_LUMEN_HU or _core_sd(small, aorta[0], sp) > 40.0):
            continue  # bright "tube" was not a contrast-filled aorta (too dark, or textured like marrow)
        if is_contrast:
            if bones is None and AORTIC_PLAQUE_BAND_MM is not None:
                # a large plaque anchors a false "bone" whose "marrow" is the lumen beside it: the rays
                # stop there and the bone removal cuts the plaque out (issue 6). The lumen found by
                # this first track, and the plaques on its wall, are refused as bone
                track = {z: (a.centre_mm, a.radius_mm, a.inside_hu) for z, a in aorta[0].items()}
                lumen_mask = contrast_lumen_mask(img, sp, track, cortex_hu=400.0)
                bone_cta = threshold_bones(small, sp, cortex_hu=400.0, lumen=lumen_mask,
                                           plaque_band_mm=AORTIC_PLAQUE_BAND_MM)
                bone_small = bone_cta
                spine_x, spine_ant, has_spine = _spine_reference(bone_small, body_small, sp)
            # refine the edge at half-way between the lumen and the wall
            ctx = _Ctx(img, bone_small, sp, True, 0.5 * (lumen + 40.0))
            aorta = _find_and_track_aorta(ctx, body_small, spine_x, spine_ant, has_spine, metal) or aorta
        results = (ctx, aorta, lumen)
        break

    labels_c = np.zeros(hu.shape, np.uint8)
    uncertain: dict[str, set[int]] = {n: set() for n in VESSEL_LABELS.values()}
    lumen_hu = float("nan")
    contrast_detected = False
    if results is None:
        notes.append("no aorta found: no round tube in front of the spine was followed over ≥ 50 mm")
    else:
        ctx, (aorta_fits, aorta_unc, bif_z, iliac_seeds), lumen_hu = results
        contrast_detected = lumen_hu > CONTRAST_LUMEN_HU
        grow = {k: (v if ctx.contrast else 0.0) for k, v in WALL_MM.items()}
        # veins are followed by their fat edge (on CTA they enhance less than the arteries, or as much)
        vctx = ctx if not ctx.contrast else _Ctx(ctx.img, bone_plain.copy(), ctx.spacing, False, FAT_EDGE_HU)
        pelvis: dict[str, dict[int, _Fit]] = {}
        pelvis_unc: dict[str, list[int]] = {}
        for z, fit in aorta_fits.items():
            if metal is not None and metal.near(z, fit.centre_mm):
                uncertain["aorta"].add(z)  # a seed or a bridged slice on the streaks: not drawn
                continue
            _draw(labels_c, _ID["aorta"], z, fit, grow["aorta"], sp_full[1:], offset_mm)
        uncertain["aorta"].update(aorta_unc)
        zs = sorted(aorta_fits)
        lo, hi = sorted((to_index(zs[0]), to_index(zs[-1])))
        notes.append(f"aorta: slices {lo}–{hi}, "
                     f"lumen median {lumen_hu:.0f} HU, {'contrast' if contrast_detected else 'non-contrast'}")
        if bif_z is None:
            notes.append("no aortic bifurcation found in the scan: iliac and femoral arteries not followed")
        else:
            head_z = _femoral_level(bone_small, sp, spine_x, bif_z)
            # the iliac → femoral boundary as TotalSegmentator draws it: at the top of the pubic
            # symphysis (the femoral-head estimate where the symphysis is not in the scan)
            pub_z = pubic_symphysis_top(bone_small, body_small, sp, below_z=bif_z) if ILIAC_ENDS_AT_PUBIS else None
            fem_z = pub_z if pub_z is not None else head_z
            # iliacs re-acquired below metal: the bifurcation lies somewhere in the streaked gap,
            # so the gap is uncertain for the iliacs too
            gap = [z for z in aorta_unc if bif_z < z < min(aorta_fits)]
            for side in iliac_seeds:
                uncertain[f"iliac_artery_{side}"].update(gap)
            artery_kw = {side: dict(r_range_mm=(2.0, 14.0), max_shift_mm=4.0 + 1.0 * sp[0], max_gap_mm=ARTERY_MAX_GAP_MM,
                                    coast_mm=ARTERY_COAST_MM,
                                    min_hits=0.3, r_cap_mm=ILIAC_MAX_RADIUS_MM - grow["iliac"], side=side)
                         for side in ("left", "right")}
            # a seed taken from a split blob can be far too thin (the crotch between the iliacs):
            # refitted on its own with a common-iliac prior, it is kept when the rays agree
            # (or on the next slice down, where the two have parted)
            for side, (zs0, seed) in list(iliac_seeds.items()):
                for zr in (zs0, zs0 - 1):
                    own = _fit_tube(ctx, zr, seed.centre_mm, max(seed.radius_mm, 4.0)) if zr >= 0 else None
                    if (own is not None and own.hit_fraction >= 0.6 and own.radius_mm > seed.radius_mm
                            and 2.0 <= own.radius_mm <= ILIAC_MAX_RADIUS_MM
                            and np.hypot(*(own.centre_mm - seed.centre_mm))
                            <= seed.radius_mm + 2.0 + (zs0 - zr) * sp[0]):
                        iliac_seeds[side] = (zr, own)
                        break
            # each iliac's course through the pelvis by a minimal path: the tracker fits the tube on
            # it instead of guessing slice by slice where the artery touches its vein. The path's
            # cue (fat in front of the artery, its vein behind) holds down to the inguinal ligament,
            # ≈ 20 mm above the femoral heads' centre; in the groin the greedy tracker takes over
            z_groin = 0 if head_z is None else head_z + int(round(GUIDE_ABOVE_FEMORAL_MM / sp[0]))
            for side, (zs0, seed) in iliac_seeds.items():
                guide = (_iliac_guide(ctx, zs0, seed.centre_mm, z_groin, side, seed.radius_mm)
                         if USE_ILIAC_PATH else {})
                artery_kw[side]["guide"] = guide
            pelvis, pelvis_unc = _track_pelvis(ctx, vctx, aorta_fits, bif_z, iliac_seeds, artery_kw, metal, notes)
            for side, (zs0, seed) in iliac_seeds.items():
                up, unc_up, _ = _track(ctx, zs0, seed, +1, z_limit=bif_z, metal=metal, **artery_kw[side])
                fits = {**pelvis.get(f"iliac_artery_{side}", {}), zs0: seed, **up}
                if GUIDED_CALIBRE_HOLD is not None and artery_kw[side].get("guide"):
                    fits = refit_short_iliac(ctx, fits, sorted(artery_kw[side]["guide"]), gate=GUIDED_CALIBRE_HOLD)
                if WEAK_REROUTE_MM is not None and artery_kw[side].get("guide") and not ctx.contrast:
                    # (the seed is no anchor: it is the split blob at the bifurcation, not the tube)
                    fits = reroute_weak_guided_fits(ctx, fits, [z for z in sorted(artery_kw[side]["guide"]) if z != zs0],
                                                    max_span_mm=WEAK_REROUTE_MM)
                fits = _smooth_track(fits, size=3)
                if HALF_MAX_OUTLINE and not ctx.contrast:
                    track = dict(fits)  # the tilt is read off the tracked centres
                    for z, fit in fits.items():
                        # the outline at the half-maximum between the tube and the fat around it; the
                        # core level is held to blood/wall HU (0–60) so that wall calcium caught in
                        # the core cannot raise the level and shrink the mask off the calcium
                        core_hu = float(np.clip(fit.inside_hu, 0.0, 60.0))
                        tilt = track_tilt_yx(track, z, sp[0]) if OBLIQUE_PLAIN_OUTLINE else None
                        band_tilt = (band_tilt_yx(tilt, fit.hit_fraction, z - zs0)
                                     if OBLIQUE_OUTLINE_BAND else None)
                        lo, hi = half_max_band_mm(fit.radii_mm, fit.radius_mm, band_tilt)
                        radii = np.clip(half_max_radii(ctx.img[z], sp[1:], fit.centre_mm, fit.radii_mm, core_hu,
                                                       tilt_yx=tilt), lo, hi)
                        fits[z] = _Fit(fit.centre_mm, radii, float(radii.mean()), fit.hit_fraction, fit.inside_hu)
                    guide = artery_kw[side].get("guide") or {}
                    if CALIBRE_LENGTH_MM is not None and guide:
                        # below the path the greedy fit of an artery touching its vein runs on into the
                        # vein and swells (real scan: 16–25 voxels against 9–12); the outline, not the
                        # centre, is bounded by the calibre seen on the path's last slices (holding the
                        # tracker's radius instead let the centre drift onto the vein, round 5)
                        measured = {z: f.radius_mm for z, f in fits.items() if f.hit_fraction > 0.0}
                        cal = path_calibre_mm(measured, guide, spacing_z_mm=sp[0], length_mm=CALIBRE_LENGTH_MM)
                        if cal is not None:
                            for z in [z for z in fits if z < min(guide)]:
                                f_ = fits[z]
                                radii = np.minimum(f_.radii_mm, cal)
                                fits[z] = _Fit(f_.centre_mm, radii, float(radii.mean()), f_.hit_fraction,
                                               f_.inside_hu)
                for z, fit in fits.items():
                    part = "femoral" if (fem_z is not None and z < fem_z) else "iliac"
                    if metal is not None and metal.near(z, fit.centre_mm):
                        uncertain[f"{part}_artery_{side}"].add(z)
                        continue
                    if OBLIQUE_WALL and grow[part] > 0.0:
                        # the iliacs cross the axial plane at 25–40°: their wall is wider along the tilt
                        wall = oblique_wall_mm(grow[part], track_tilt_yx(fits, z, sp[0]))
                        fit = _Fit(fit.centre_mm, fit.radii_mm + wall, fit.radius_mm, fit.hit_fraction,
                                   fit.inside_hu)
                        _draw(labels_c, _ID[f"{part}_artery_{side}"], z, fit, 0.0, sp_full[1:], offset_mm)
                        continue
                    _draw(labels_c, _ID[f"{part}_artery_{side}"], z, fit, grow[part], sp_full[1:], offset_mm)
                for z in pelvis_unc.get(f"iliac_artery_{side}", []) + unc_up:
                    part = "femoral" if (fem_z is not None and z < fem_z) else "iliac"
                    uncertain[f"{part}_artery_{side}"].add(z)
            for side in ("left", "right"):
                if side not in iliac_seeds:
                    notes.append(f"{side} iliac artery not found below the bifurcation")
            notes.append(f"aortic bifurcation at slice {to_index(bif_z)}; iliac → femoral boundary "
                         f"{'not in the scan' if fem_z is None else f'at slice {to_index(fem_z)}'}")
        if bif_z is None:
            pelvis, pelvis_unc = _track_pelvis(ctx, vctx, aorta_fits, None, {}, {}, metal, notes)
        # the veins last: where an artery and its vein touch, the artery keeps the voxels
        for name in VEIN_NAMES:
            vfits = pelvis.get(name, {})
            for z, fit in (_smooth_track(vfits, size=3) if len(vfits) >= 3 else vfits).items():
                if metal is not None and metal.near(z, fit.centre_mm):
                    uncertain[name].add(z)
                    continue
                _draw(labels_c, _ID[name], z, fit, 0.0, sp_full[1:], offset_mm)
            uncertain[name].update(pelvis_unc.get(name, []))
        if not ctx.contrast:
            notes.append("renal, celiac and SMA origins are not looked for on non-contrast CT (absent)")
        else:
            _visceral_origins(ctx, aorta_fits, labels_c, sp_full[1:], offset_mm, grow["branch"], notes)

    # bone never inside a vessel: remove the (dilated) skeleton at full resolution
    if labels_c.any():
        if bones is not None:
            bone_full = bone_c
        else:
            bone_full = np.repeat(np.repeat(bone_small, f, axis=1), f, axis=2)
            pad = [(0, 0), (0, hu.shape[1] - bone_full.shape[1]), (0, hu.shape[2] - bone_full.shape[2])]
            bone_full = np.pad(bone_full, pad, mode="edge") & (hu > 100)
        if not contrast_detected and WALL_CALCIUM_REACH_MM is not None:
            labels_c = grow_into_wall_calcium(labels_c, hu, sp_full, [_ID[n] for n in ARTERY_NAMES],
                                              reach_mm=WALL_CALCIUM_REACH_MM,
                                              free_ids=[_ID[n] for n in VEIN_NAMES])
        zz, yy, xx = np.nonzero(labels_c)
        lo = np.maximum([zz.min(), yy.min() - 4, xx.min() - 4], 0)
        hi = np.array([zz.max() + 1, yy.max() + 5, xx.max() + 5])
        box = tuple(slice(a, b) for a, b in zip(lo, hi))
        # 1.5 mm of margin around bone; none where a voxel is coarser than that (a whole 3-mm
        # voxel ring would cut away the wall plaques that sit 2–5 mm from the vertebrae)
        it = int(round(1.5 / min(sp_full[1], sp_full[2])))
        near_bone = bone_full[box]
        if it > 0:  # (scipy dilates until nothing changes when iterations < 1)
            near_bone = near_bone | ndimage.binary_dilation(
                near_bone, structure=ndimage.generate_binary_structure(3, 1) * np.array([0, 1, 0], bool)[:, None, None],
                iterations=it)
        labels_c[box][near_bone] = 0
        # the veins lie flat on the vertebrae and the sacrum and carry no calcium to keep: they
        # stay one voxel (≥ 3 mm) off bone and off any voxel brighter than blood (HU > 100 without contrast)
        veins = np.isin(labels_c[box], [_ID[n] for n in VEIN_NAMES])
        if veins.any():
            k = max(1, int(round(3.0 / min(sp_full[1], sp_full[2]))))
            if not contrast_detected:
                bright = hu[box] > 100
            elif bones is not None:
                bright = bone_c[box]
            else:  # the plain threshold skeleton (the CTA one keeps only bone near dense cortex)
                plain = np.repeat(np.repeat(bone_plain, f, axis=1), f, axis=2)
                plain = np.pad(plain, [(0, 0), (0, hu.shape[1] - plain.shape[1]), (0, hu.shape[2] - plain.shape[2])],
                               mode="edge")
                bright = plain[box] & (hu[box] > 100)
            ring = ndimage.generate_binary_structure(3, 1) * np.array([0, 1, 0], bool)[:, None, None]
            labels_c[box][veins & ndimage.binary_dilation(bright | near_bone, structure=ring, iterations=k)] = 0
    # a slice counts as uncertain only where no mask of that vessel was drawn
    drawn = {n: set(np.flatnonzero((labels_c == i).any(axis=(1, 2))).tolist()) for i, n in VESSEL_LABELS.items()}
    if perm[0] != 0:
        notes.append("slice indices refer to the volume's head–foot axis (the grid is not stored axial-first)")
    unc_out = {n: tuple(sorted(to_index(z) for z in s - drawn[n])) for n, s in uncertain.items() if s - drawn[n]}
    labels = _from_canonical(labels_c, perm, flips).copy()
    lm = LabelMap(labels=labels, grid=grid, names=dict(VESSEL_LABELS), uncertain_slices=unc_out)
    return VesselResult(labels=lm, uncertain_slices=unc_out, contrast_detected=bool(contrast_detected),
                        lumen_hu_median=lumen_hu, elapsed_s=time.perf_counter() - t0, notes=tuple(notes))


__all__ = ["CONTRAST_LUMEN_HU", "VEIN_NAMES", "VESSEL_LABELS", "VesselResult", "WALL_MM", "artery_in_front",
           "artery_path_cost", "blob_has_crotch", "calibre_held_fit", "contrast_lumen_mask", "drop_stub_after_gap", "enhanced_min_mm3", "grow_into_wall_calcium", "wall_plaque_mask", "needs_calibre_hold",
           "follow_large_mass", "half_depth_mm", "half_max_band_mm", "band_tilt_yx", "half_max_radii", "lateral_bone_front_px", "oblique_wall_mm", "path_calibre_mm", "path_wall_support", "pubic_symphysis_top", "refit_short_iliac", "reroute_weak_guided_fits", "pinned_tube_path", "disc_tissue_fraction", "same_tube", "split_at_aortic_calibre", "choose_aorta_track",
           "segment_vessels",
           "slice_minimal_path", "threshold_body", "threshold_bones", "track_tilt_yx"]
