"""Abdomen–pelvis–leg vascular phantom: T12–sacrum, pelvis, femurs, aorta to the femoral arteries.

Anatomy is laid out in LPS mm with z = 0 a little above T12 and z decreasing towards the knees
(:func:`abdominal_layout`). Sizes follow an average adult; they are meant to look like CT, not to be
an atlas. Calcium lies only in artery walls, as annular sectors with exact truth.

The arteries have their companion veins, as on a real CT (:func:`abdominal_veins`): the inferior vena
cava right of the aorta (larger, flatter), the common iliac veins joining it at L5 (the right common
iliac artery crosses in front of the confluence and the left common iliac vein), the external iliac
and femoral veins medial/posterior to their arteries, all beside the psoas muscles. Each artery and
vein is wrapped in a thin fat plane (−100 HU, 1–3 mm) that is present in most places but not all
(:func:`_paint_fat_planes`): where it is missing, artery, vein and psoas touch with no edge between
them — the hard case of non-contrast CT. Veins are 45 HU without contrast and lag behind the arteries
on CTA (``vein_hu``). Artery walls are anatomical: aorta 2.0 mm, common iliac 1.5 mm, external iliac
and femoral 1.2 mm, visceral branches 1.0 mm; every vessel label is lumen + wall. The external iliac
label becomes femoral at the axial plane of the top of the pubic symphysis
(:func:`iliac_femoral_boundary_z_mm`), TotalSegmentator's boundary (docs/phantoms.md).
"""

from __future__ import annotations

from dataclasses import asdict, replace

import numpy as np
from scipy import ndimage

from vascalc.errors import GeometryError, InputError
from vascalc.imaging.labelmap import LabelMap
from vascalc.imaging.volume import Volume
from vascalc.phantoms import physics
from vascalc.phantoms.core import (TRUTH_SCHEMA_VERSION, CtPhysics, Vessel, make_grid, paint_vessels, place_sectors, plaque_records,
                                   random_plaques, render_ct, scan_info, spec_hash, structure_truth)
from vascalc.phantoms.geometry import (Canvas, axis_coords_mm, ellipse_stack_sdf, index_slices, paint, paint_capsule,
                                       paint_ellipsoid, paint_plate, segment_distance)
from vascalc.phantoms.metal import metal_streaks
from vascalc.phantoms.types import Phantom, PlaqueSpec


#: Tissue CT numbers (HU, non-contrast, 120 kVp); see docs/phantoms.md for the comparison with a real scan.
TISSUE_HU = {
    "air": -1000.0, "fat": -100.0, "muscle": 50.0, "soft_tissue": 25.0, "liver": 55.0, "kidney": 32.0,
    "blood": 40.0, "wall": 45.0, "csf": 12.0, "disc": 80.0, "bladder": 8.0, "gas": -850.0,
    "cortical": 1000.0, "trabecular": 190.0, "dense_cortical": 1250.0, "marrow_fat": -40.0,
    "cancellous": 230.0, "posterior_elements": 330.0, "cartilage": 70.0, "metal": 3071.0, "vein": 45.0,
}

VESSEL_NAMES = ("aorta", "common_iliac_artery_left", "common_iliac_artery_right", "external_iliac_artery_left",
                "external_iliac_artery_right", "femoral_artery_left", "femoral_artery_right", "renal_artery_left",
                "renal_artery_right", "celiac_trunk", "superior_mesenteric_artery")
VERTEBRAE = ("vertebrae_T12", "vertebrae_L1", "vertebrae_L2", "vertebrae_L3", "vertebrae_L4", "vertebrae_L5")
LANDMARK_NAMES = (*VERTEBRAE, "sacrum", "hip_left", "hip_right", "femur_left", "femur_right", "kidney_left",
                  "kidney_right", "liver", "inferior_vena_cava", "urinary_bladder", "metal_implant")
BONE_NAMES = (*VERTEBRAE, "sacrum", "hip_left", "hip_right", "femur_left", "femur_right")
#: Veins with their own labels (the IVC keeps its landmark id); TotalSegmentator v2 names where it has them.
VEIN_NAMES = ("iliac_vena_left", "iliac_vena_right", "femoral_vein_left", "femoral_vein_right")
_CAVITY = 900  # temporary label of the abdominal cavity while painting

LABEL_IDS: dict[str, int] = {name: i + 1 for i, name in enumerate(VESSEL_NAMES)}
LABEL_IDS.update({name: 21 + i for i, name in enumerate(LANDMARK_NAMES)})
LABEL_IDS.update({name: 41 + i for i, name in enumerate(VEIN_NAMES)})

# (name, body height mm, half-width ax, half-depth ay, centre y) cranial → caudal; discs between.
_VERTEBRA_SHAPES = (("vertebrae_T12", 24, 20.0, 14.0, 48.0), ("vertebrae_L1", 26, 21.0, 15.0, 46.0),
                    ("vertebrae_L2", 27, 22.5, 15.5, 43.0), ("vertebrae_L3", 28, 24.0, 16.0, 41.0),
                    ("vertebrae_L4", 28, 25.0, 16.5, 40.0), ("vertebrae_L5", 27, 25.0, 16.5, 43.0))
_DISCS_MM = (8.0, 9.0, 9.0, 10.0, 10.0, 10.0)


def abdominal_layout() -> dict:
    """z ranges (mm) of the vertebral bodies and the levels everything else hangs from."""
    z = -12.0
    vertebrae = {}
    for (name, h, ax, ay, cy), disc in zip(_VERTEBRA_SHAPES, _DISCS_MM):
        vertebrae[name] = {"z_top_mm": z, "z_bottom_mm": z - h, "half_width_mm": ax, "half_depth_mm": ay,
                           "centre_y_mm": cy}
        z -= h + disc
    sacrum_top = z
    l4 = vertebrae["vertebrae_L4"]
    z_hip = -310.0
    _, pubis, pubis_r = superior_pubic_ramus(1, z_hip)
    return {"vertebrae": vertebrae, "sacrum_top_mm": sacrum_top, "sacrum_bottom_mm": sacrum_top - 102.0,
            "z_bifurcation_mm": 0.5 * (l4["z_top_mm"] + l4["z_bottom_mm"]), "z_hip_mm": z_hip,
            "z_pubic_symphysis_top_mm": pubis[2] + pubis_r,
            "z_groin_mm": z_hip - 70.0, "z_knee_mm": z_hip - 420.0, "z_renal_mm": -75.0, "z_celiac_mm": -40.0}


def superior_pubic_ramus(side: int, z_hip_mm: float) -> tuple[tuple[float, float, float], tuple[float, float, float],
                                                                 float]:
    """The superior pubic ramus as a capsule (LPS mm): lateral end at the acetabulum, medial end (the
    pubic body, 3 mm from the midline at its tip: the two meet at the symphysis) and radius.

    One definition for the bone that is painted and for the iliac/femoral label boundary, so that the
    boundary follows the pelvis (:func:`iliac_femoral_boundary_z_mm`)."""
    return (75.0 * side, -30.0, z_hip_mm - 10.0), (12.0 * side, -65.0, z_hip_mm - 25.0), 9.0


#: The iliac → femoral label rule (TotalSegmentator's convention as read off its reference masks;
#: docs/segmentation.md "Round 12" and docs/phantoms.md).
ILIAC_FEMORAL_RULE = ("top of the pubic symphysis (pubic tubercle, the medial attachment of the inguinal ligament): "
                      "voxels whose centre lies at or above this axial plane are external iliac, below it femoral")


def iliac_femoral_boundary_z_mm() -> float:
    """z (mm) of the axial plane where ``external_iliac_artery_*`` becomes ``femoral_artery_*``: the top
    of the pubic symphysis, i.e. the top of the medial end of the superior pubic ramus
    (:func:`superior_pubic_ramus`; −326 mm with the default pelvis, 16 mm below the femoral heads' centre).

    TotalSegmentator's ``iliac_artery_*`` ends there (its reference masks, docs/segmentation.md round 3),
    and vascalc's labels carry its names, so the phantom truth, the built-in segmenter and the
    TotalSegmentator reference share this one boundary."""
    return float(abdominal_layout()["z_pubic_symphysis_top_mm"])


def split_at_plane(upper: Vessel, lower: Vessel, z_mm: float) -> tuple[Vessel, Vessel, float]:
    """Move the junction of two consecutive vessels (``upper`` ends where ``lower`` starts) down to
    where ``lower``'s centreline crosses the axial plane ``z_mm``.

    Returns the lengthened upper vessel, the shortened lower one (same course, same per-piece radii:
    the piece that holds the crossing is cut in two) and the arc length (mm) of the crossing along the
    old ``lower``. Raises GeometryError when ``lower`` does not cross the plane below its start."""
    p = np.asarray(lower.points, float)
    if not np.allclose(p[0], upper.points[-1]):
        raise GeometryError(f"{lower.name} does not start where {upper.name} ends")
    crossing = np.flatnonzero((p[:-1, 2] >= z_mm) & (p[1:, 2] < z_mm))
    if crossing.size == 0 or p[0, 2] < z_mm:
        raise GeometryError(f"{lower.name} does not cross z = {z_mm} mm below its start")
    k = int(crossing[0])
    t = (p[k, 2] - z_mm) / (p[k, 2] - p[k + 1, 2])
    cut = tuple(float(c) for c in p[k] + t * (p[k + 1] - p[k]))
    s_cut = float(lower.segment_lengths()[:k].sum() + t * lower.segment_lengths()[k])
    new_upper = Vessel(upper.name, (*upper.points, *lower.points[1:k + 1], cut),
                       (*upper.lumen_radius_mm, *lower.lumen_radius_mm[:k + 1]), upper.wall_mm, upper.start_margin_mm)
    new_lower = Vessel(lower.name, (cut, *lower.points[k + 1:]), tuple(lower.lumen_radius_mm[k:]), lower.wall_mm,
                       lower.start_margin_mm)
    return new_upper, new_lower, s_cut


def _mirror(points, side: int):
    return tuple((side * x, y, z) for x, y, z in points)


def abdominal_vessels() -> list[Vessel]:
    """Centrelines (xyz mm) and radii of the arteries; branches first, the aorta last (it wins overlaps)."""
    L = abdominal_layout()
    zb = L["z_bifurcation_mm"]
    vessels = []
    for side, tag in ((1, "left"), (-1, "right")):
        cia_end = (45.0 * side if side > 0 else -42.0, 20.0, zb - 55.0)
        vessels.append(Vessel(f"common_iliac_artery_{tag}", ((4.0, 9.0, zb), cia_end), (5.0,), 1.5,
                              start_margin_mm=15.0))
        eia = (cia_end, (62.0 * side, -15.0, -270.0), (80.0 * side, -50.0, -305.0))
        vessels.append(Vessel(f"external_iliac_artery_{tag}", eia, (4.0, 4.0), 1.2, start_margin_mm=8.0))
        fem = ((80.0, -50.0, -305.0), (82.0, -45.0, -380.0), (78.0, -25.0, -520.0), (60.0, 20.0, -600.0),
               (62.0, 45.0, -650.0), (66.0, 50.0, -690.0))
        vessels.append(Vessel(f"femoral_artery_{tag}", _mirror(fem, side), (3.6, 3.5, 3.3, 3.2, 3.2), 1.2,
                              start_margin_mm=6.0))
    zr = L["z_renal_mm"]
    vessels.append(Vessel("renal_artery_left", ((10.0, 13.0, zr), (35.0, 18.0, zr - 3), (55.0, 30.0, zr - 10)),
                          (2.8, 2.8), 1.0, start_margin_mm=16.0))
    vessels.append(Vessel("renal_artery_right", ((10.0, 13.0, zr), (-10.0, 16.0, zr - 2), (-32.0, 22.0, zr - 5),
                                                 (-55.0, 30.0, zr - 10)), (2.8, 2.8, 2.8), 1.0, start_margin_mm=22.0))
    zc = L["z_celiac_mm"]
    vessels.append(Vessel("celiac_trunk", ((12.0, 14.5, zc), (12.0, -12.0, zc + 2), (14.0, -30.0, zc + 4)),
                          (3.0, 3.0), 1.0, start_margin_mm=16.0))
    vessels.append(Vessel("superior_mesenteric_artery", ((11.0, 14.0, zc - 14), (11.0, -14.0, zc - 18),
                                                         (10.0, -28.0, zc - 35), (8.0, -32.0, zc - 100)),
                          (3.2, 3.2, 3.2), 1.0, start_margin_mm=16.0))
    vessels.append(Vessel("aorta", ((12.0, 16.0, 10.0), (10.0, 14.0, -57.0), (7.0, 11.5, -129.0), (4.0, 9.0, zb)),
                          (11.0, 10.5, 9.5), 2.0, start_margin_mm=2.0))
    return vessels


def abdominal_veins() -> dict[str, tuple[tuple[float, float, float, float, float], ...]]:
    """The veins as stacks of axial ellipses: per vein, knots (z, centre x, centre y, semi-axis x,
    semi-axis y) in mm, cranial → caudal, linearly interpolated between knots.

    The IVC runs right of the aorta, wider than deep (≈ 26 × 16 mm), down to the confluence at L5
    (≈ 3 cm below the aortic bifurcation); the common iliac veins leave it posterior and medial to
    the common iliac arteries, the left one crossing the midline behind the right common iliac
    artery; external iliac and femoral veins run medial/posterior to their arteries, a few mm away
    (popliteal: behind the artery)."""
    L = abdominal_layout()
    zc = L["vertebrae"]["vertebrae_L5"]["z_top_mm"] - 6.0  # confluence at the upper L5 body
    veins = {"inferior_vena_cava": ((20.0, -26.0, 6.0, 13.0, 9.0), (-100.0, -24.0, 14.0, 13.0, 8.5),
                                    (-170.0, -20.0, 22.5, 12.0, 6.5), (zc, -13.0, 25.0, 13.0, 5.5))}
    for side, tag in ((1, "left"), (-1, "right")):
        x0 = -5.0 if side > 0 else -20.0  # the confluence lies right of the midline
        veins[f"iliac_vena_{tag}"] = ((zc + 4.0, x0, 25.0, 6.5, 5.0), (-232.0, 31.0 * side, 31.0, 7.0, 5.5),
                                      (-270.0, 52.0 * side, -6.0, 6.5, 5.5), (-305.0, 69.0 * side, -44.0, 6.0, 5.0))
        veins[f"femoral_vein_{tag}"] = ((-305.0, 69.0 * side, -44.0, 6.0, 5.0), (-380.0, 71.0 * side, -38.0, 5.5, 4.5),
                                        (-520.0, 68.0 * side, -18.0, 5.0, 4.5), (-600.0, 52.0 * side, 28.0, 5.0, 4.5),
                                        (-650.0, 56.0 * side, 55.0, 5.0, 4.5), (-690.0, 60.0 * side, 60.0, 5.0, 4.5))
    return veins


def _interp(zs, values):
    zs = np.asarray(zs, float)
    order = np.argsort(zs)
    vals = [np.asarray(v, float)[order] for v in zip(*values)]
    return lambda Z: tuple(np.interp(Z, zs[order], v) for v in vals)


def smooth_field(rng: np.random.Generator, shape: tuple[int, int, int], spacing_mm: tuple[float, float, float],
                 cell_mm: float) -> np.ndarray:
    """Smooth random field (float32, ~unit SD at the knots): white noise on a lattice of ``cell_mm``,
    trilinearly interpolated to the grid. Separable gathers instead of ``ndimage.zoom`` keep it fast
    (three passes over the output at most)."""
    out = rng.standard_normal(tuple(int(np.ceil(n * d / cell_mm)) + 2 for n, d in zip(shape, spacing_mm)))
    out = out.astype(np.float32)
    for axis, (n, d) in enumerate(zip(shape, spacing_mm)):
        pos = np.arange(n) * d / cell_mm + 0.5
        i0 = np.floor(pos).astype(int)
        w = (pos - i0).astype(np.float32)
        shape_w = [1, 1, 1]
        shape_w[axis] = n
        w = w.reshape(shape_w)
        out = np.take(out, i0, axis=axis) * (1 - w) + np.take(out, i0 + 1, axis=axis) * w
    return out


def _paint_anatomy(canvas: Canvas, rng: np.random.Generator, *, lumen_hu: float, contrast: bool) -> None:
    H = TISSUE_HU
    L = abdominal_layout()
    ids = LABEL_IDS
    zh, zg, zk = L["z_hip_mm"], L["z_groin_mm"], L["z_knee_mm"]
    top = 20.0
    enh = (lumen_hu - H["blood"]) if contrast else 0.0  # organ enhancement scales with the bolus
    # Trunk: skin/subcutaneous fat, muscle wall, cavity.
    trunk_z = (top, -100.0, zh, zg - 10.0)
    trunk = _interp(trunk_z, [(0.0, 10.0, 150.0, 120.0), (0.0, 10.0, 160.0, 122.0), (0.0, 8.0, 175.0, 115.0),
                              (0.0, 5.0, 165.0, 105.0)])
    centre = lambda Z: trunk(Z)[:2]  # noqa: E731
    for shrink, value, label in ((0.0, H["fat"], None), (24.0, H["muscle"], None),
                                 (33.0, H["soft_tissue"], _CAVITY)):
        axes = lambda Z, s=shrink: (trunk(Z)[2] - s, trunk(Z)[3] - s * 0.9)  # noqa: E731
        paint(canvas, (-180, -130, zg - 10), (180, 140, top),
              ellipse_stack_sdf(zg - 10.0, top, centre, axes), value, label)
    # Legs.
    for side in (1, -1):
        leg = _interp((zg + 40.0, zk - 40.0), [(90.0 * side, 0.0, 85.0, 80.0), (75.0 * side, 10.0, 55.0, 55.0)])
        for shrink, value in ((0.0, H["fat"]), (14.0, H["muscle"])):
            paint(canvas, (-180, -100, zk - 60), (180, 100, zg + 40),
                  ellipse_stack_sdf(zk - 60.0, zg + 40.0, lambda Z, f=leg: f(Z)[:2],
                                    lambda Z, f=leg, s=shrink: (f(Z)[2] - s, f(Z)[3] - s)), value)
    # Two smooth random fields (correlation ~12 mm whatever the voxel size): one mixes the viscera
    # (soft tissue, fat, a little bowel gas), the other adds the mild inhomogeneity of real tissue.
    fields = [smooth_field(rng, canvas.grid.shape, canvas.grid.spacing_mm, 12.0) for _ in range(2)]
    field, texture = fields[0], fields[1]
    cavity = canvas.labels == _CAVITY
    mix = np.where(field > 0.0, np.float32(H["fat"]), np.float32(H["soft_tissue"] + 0.2 * enh))
    mix = np.where(field < -1.6, np.float32(H["gas"]), mix)
    canvas.hu[cavity] = mix[cavity]
    del mix, field
    # Organs.
    liver = _interp((10.0, -90.0), [(-75.0, -5.0, 80.0, 85.0), (-85.0, 5.0, 35.0, 40.0)])
    paint(canvas, (-170, -100, -90), (10, 100, 10), ellipse_stack_sdf(-90.0, 10.0, lambda Z: liver(Z)[:2],
                                                                       lambda Z: liver(Z)[2:]),
          H["liver"] + 0.5 * enh, ids["liver"])
    for side, tag in ((1, "left"), (-1, "right")):
        paint_ellipsoid(canvas, (80.0 * side, 45.0, -95.0), (26.0, 24.0, 55.0), H["kidney"] + 0.8 * enh,
                        ids[f"kidney_{tag}"])
    paint_ellipsoid(canvas, (0.0, -50.0, zh + 10.0), (45.0, 35.0, 35.0), H["bladder"], ids["urinary_bladder"])
    # Muscles: psoas (to the hip) and paraspinal.
    for side in (1, -1):
        # (the psoas runs down behind-lateral of the iliac vessels, which lie on its medial border)
        psoas = _interp((-44.0, -130.0, -218.0, zh + 20),
                        [(30.0 * side, 45.0, 8.0, 8.0), (40.0 * side, 45.0, 18.0, 16.0),
                         (50.0 * side, 37.0, 22.0, 18.0), (72.0 * side, 5.0, 16.0, 16.0)])
        paint(canvas, (-100, -40, zh + 20), (100, 70, -44),
              ellipse_stack_sdf(zh + 20, -44.0, lambda Z, f=psoas: f(Z)[:2], lambda Z, f=psoas: f(Z)[2:]), H["muscle"])
        para = _interp((top, -250.0), [(28.0 * side, 100.0, 24.0, 20.0), (22.0 * side, 105.0, 18.0, 14.0)])
        paint(canvas, (-60, 70, -250), (60, 130, top), ellipse_stack_sdf(-250.0, top, lambda Z, f=para: f(Z)[:2],
                                                                         lambda Z, f=para: f(Z)[2:]), H["muscle"])
    _paint_spine(canvas, L, top)
    _paint_pelvis_and_femurs(canvas, L)
    # Texture: ±8 HU (1 SD) in soft tissue, ±45 HU in bone, none in air.
    amplitude = np.where(canvas.hu > 150, np.float32(45.0), np.where(canvas.hu > -500, np.float32(8.0),
                                                                     np.float32(0.0)))
    canvas.hu += amplitude * texture


def _vein_sdf(knots):
    """Signed distance (mm) of a vein given as axial-ellipse knots (see :func:`abdominal_veins`), and its box."""
    k = np.asarray(knots, float)
    f = _interp(k[:, 0], [tuple(r[1:]) for r in k])
    lo = (float((k[:, 1] - k[:, 3]).min()), float((k[:, 2] - k[:, 4]).min()), float(k[:, 0].min()))
    hi = (float((k[:, 1] + k[:, 3]).max()), float((k[:, 2] + k[:, 4]).max()), float(k[:, 0].max()))
    return ellipse_stack_sdf(lo[2], hi[2], lambda Z: f(Z)[:2], lambda Z: f(Z)[2:]), lo, hi


def _soft_tissue_labels() -> tuple[int, ...]:
    """Labels a vein or a fat plane may be painted over: unlabelled tissue, the cavity, soft organs."""
    return (0, _CAVITY, *(LABEL_IDS[n] for n in ("liver", "kidney_left", "kidney_right", "inferior_vena_cava")))


def _paint_fat_planes(canvas: Canvas, arteries: list[Vessel], veins: dict, rng: np.random.Generator) -> None:
    """A fat plane (−100 HU) 1–3 mm thick around every artery and vein, missing in ≈ 1/4 of places.

    Its thickness follows a smooth random field (30-mm lattice) and is cut to zero where the field
    is low: there the vessel touches its neighbours (vein, psoas) with no edge, as on real CT.
    Painted before the vessels, so that a plane only survives where no other vessel lies.
    """
    grid = canvas.grid
    cell = 30.0
    z, y, x = (np.asarray(a) for a in axis_coords_mm(grid))
    first = np.array([x[0], y[0], z[0]])
    lattice = rng.standard_normal(tuple(int(np.ceil((a[-1] - a[0]) / cell)) + 3 for a in (z, y, x)))
    # linear interpolation of unit white noise has SD ≈ 0.6 between knots: rescale to ≈ 1
    lattice = (lattice / 0.6).astype(np.float32)

    def thickness(Z, Y, X):
        coords = np.broadcast_arrays((Z - first[2]) / cell + 1.0, (Y - first[1]) / cell + 1.0,
                                     (X - first[0]) / cell + 1.0)
        f = ndimage.map_coordinates(lattice, [c.ravel() for c in coords], order=1, mode="nearest")
        f = f.reshape(coords[0].shape)
        t = np.clip(2.0 + 0.8 * f, 0.0, 3.0)
        return np.where(t >= 1.0, t, 0.0)

    allowed = _soft_tissue_labels()
    fat = TISSUE_HU["fat"]

    def shell(sd_fn):
        def sdf(Z, Y, X):
            sd, _ = sd_fn(Z, Y, X)
            t = thickness(Z, Y, X)
            return np.where(t > 0.0, sd - t, 1e3), None
        return sdf

    for v in arteries:
        for k in range(len(v.points) - 1):
            a, b = np.asarray(v.points[k], float), np.asarray(v.points[k + 1], float)
            r = v.lumen_radius_mm[k] + v.wall_mm
            paint(canvas, np.minimum(a, b) - r - 3.0, np.maximum(a, b) + r + 3.0,
                  shell(lambda Z, Y, X, a=a, b=b, r=r: (segment_distance((X, Y, Z), a, b) - r, None)),
                  fat, None, only_labels=allowed)
    for name, knots in veins.items():
        sdf, lo, hi = _vein_sdf(knots)
        paint(canvas, (lo[0] - 3.0, lo[1] - 3.0, lo[2]), (hi[0] + 3.0, hi[1] + 3.0, hi[2]), shell(sdf), fat, None,
              only_labels=allowed)


def _paint_veins(canvas: Canvas, veins: dict, vein_hu: float) -> None:
    """The veins (labelled) over soft tissue only: bone keeps its label where a vein grazes it."""
    allowed = _soft_tissue_labels()
    for name, knots in veins.items():
        sdf, lo, hi = _vein_sdf(knots)
        paint(canvas, lo, hi, sdf, vein_hu, LABEL_IDS[name], only_labels=allowed)


def _paint_spine(canvas: Canvas, L: dict, top: float) -> None:
    H = TISSUE_HU
    ids = LABEL_IDS
    verts = L["vertebrae"]
    zs = [top] + [0.5 * (v["z_top_mm"] + v["z_bottom_mm"]) for v in verts.values()] + [L["sacrum_top_mm"]]
    shapes = [list(verts.values())[0]] + list(verts.values()) + [list(verts.values())[-1]]
    col = _interp(zs, [(0.0, v["centre_y_mm"], v["half_width_mm"], v["half_depth_mm"]) for v in shapes])
    z_bot = L["sacrum_top_mm"]
    # Discs everywhere along the column, then the canal; vertebral bodies overwrite the discs.
    paint(canvas, (-40, 20, z_bot), (40, 80, top), ellipse_stack_sdf(z_bot, top, lambda Z: col(Z)[:2],
                                                                     lambda Z: col(Z)[2:]), H["disc"])
    canal = lambda Z: (0.0 * Z, col(Z)[1] + col(Z)[3] + 12.0)  # noqa: E731
    for v_name, v in verts.items():
        z0, z1, ax, ay, cy = v["z_bottom_mm"], v["z_top_mm"], v["half_width_mm"], v["half_depth_mm"], v["centre_y_mm"]
        lab = ids[v_name]
        for dz0, shrink, value in ((0.0, 0.0, H["cortical"]), (1.2, 1.4, H["trabecular"])):
            paint(canvas, (-ax, cy - ay, z0), (ax, cy + ay, z1),
                  ellipse_stack_sdf(z0 + dz0, z1 - dz0, lambda Z, c=cy: (0.0, c),
                                    lambda Z, a=ax - shrink, b=ay - shrink: (a, b)), value, lab)
        ya = cy + ay + 12.0
        for p0, p1, half, zpad in (((0.0, ya - 8), (0.0, ya + 8), 13.0, 2.0),    # arch around the canal
                                   ((0.0, ya + 14), (0.0, ya + 40), 3.5, 6.0),    # spinous process
                                   ((-34.0, ya - 4), (34.0, ya - 4), 4.0, 10.0)):  # transverse processes
            paint_plate(canvas, z0 + zpad, z1 - zpad + 6.0, p0, p1, half, H["posterior_elements"], lab)
        paint(canvas, (-12, ya - 12, z0), (12, ya + 12, z1 + 8),
              ellipse_stack_sdf(z0 - 1.0, z1 + 9.0, lambda Z, y=ya: (0.0, y), lambda Z: (9.0, 8.0)), H["csf"], 0)
    del canal
    # Sacrum: tilts backwards and narrows.
    st, sb = L["sacrum_top_mm"], L["sacrum_bottom_mm"]
    sac = _interp((st, sb), [(0.0, 45.0, 50.0, 20.0), (0.0, 85.0, 14.0, 9.0)])
    for shrink, value in ((0.0, 800.0), (1.5, H["cancellous"])):
        paint(canvas, (-55, 20, sb), (55, 100, st),
              ellipse_stack_sdf(sb, st, lambda Z: sac(Z)[:2], lambda Z, s=shrink: (sac(Z)[2] - s, sac(Z)[3] - s)),
              value, LABEL_IDS["sacrum"])


def _paint_pelvis_and_femurs(canvas: Canvas, L: dict) -> None:
    H = TISSUE_HU
    zh, zk = L["z_hip_mm"], L["z_knee_mm"]
    crest = L["vertebrae"]["vertebrae_L4"]["z_bottom_mm"]
    for side, tag in ((1, "left"), (-1, "right")):
        hip = LABEL_IDS[f"hip_{tag}"]
        fem = LABEL_IDS[f"femur_{tag}"]
        head = (90.0 * side, -5.0, zh)
        for half, value in ((5.0, 700.0), (3.0, H["cancellous"])):
            paint_plate(canvas, zh + 35.0, crest, (48.0 * side, 75.0), (115.0 * side, -25.0), half, value, hip)
        paint_capsule(canvas, (70.0 * side, 20.0, zh + 40.0), (85.0 * side, 0.0, zh + 20.0), 14.0, 500.0, hip)
        lateral, medial, ramus_r = superior_pubic_ramus(side, zh)
        paint_capsule(canvas, lateral, medial, ramus_r, 600.0, hip)
        paint_capsule(canvas, (85.0 * side, 20.0, zh - 15.0), (65.0 * side, 40.0, zh - 70.0), 12.0, 600.0, hip)
        paint_ellipsoid(canvas, head, (33.0, 33.0, 33.0), 700.0, hip)
        paint_ellipsoid(canvas, head, (30.5, 30.5, 30.5), H["cancellous"], hip)
        paint_ellipsoid(canvas, head, (26.0, 26.0, 26.0), H["cartilage"], 0)
        # Femur: head, neck, trochanter, shaft with marrow, condyles.
        for r, value in ((24.0, 700.0), (22.0, 260.0)):
            paint_ellipsoid(canvas, head, (r, r, r), value, fem)
        for r, value in ((15.0, 700.0), (12.0, 260.0)):
            paint_capsule(canvas, head, (118.0 * side, 5.0, zh - 35.0), r, value, fem)
        paint_ellipsoid(canvas, (125.0 * side, 8.0, zh - 30.0), (17.0, 17.0, 22.0), 400.0, fem)
        shaft = ((118.0 * side, 5.0, zh - 40.0), (75.0 * side, 5.0, zk + 45.0))
        paint_capsule(canvas, *shaft, 14.0, H["dense_cortical"], fem)
        paint_capsule(canvas, *shaft, 8.5, H["marrow_fat"], fem)
        paint_ellipsoid(canvas, (75.0 * side, 10.0, zk + 20.0), (38.0, 30.0, 30.0), 600.0, fem)
        paint_ellipsoid(canvas, (75.0 * side, 10.0, zk + 20.0), (36.0, 28.0, 28.0), 250.0, fem)


def make_vascular_phantom(seed: int = 0, *, shape: tuple[int, int, int] = (100, 128, 128),
                          spacing_mm: tuple[float, float, float] = (3.0, 3.2, 3.2),
                          slice_thickness_mm: float | None = None, noise_sd_hu: float = 15.0,
                          lumen_hu: float = 40.0, plaques: str | list[PlaqueSpec] = "random",
                          metal: str | None = None, supersample: int = 4, psf_fwhm_mm: float = 1.0,
                          ssp_blur_fwhm_mm: float | None = None, noise_corr_fwhm_mm: float = 0.0,
                          hu_per_mg_cm3: float = physics.HU_PER_MG_HA_CM3,
                          plaque_rate: float = 1.0, vein_hu: float | None = None) -> Phantom:
    """Abdomen–pelvis–leg CT phantom with calcified wall plaques of exactly known volume and mass.

    The grid's top slice sits a little above T12 (z = 0 mm) and the volume extends caudally for
    ``shape[0]`` slices of ``spacing_mm[0]`` (the slice increment); the defaults (100 × 128 × 128,
    3 × 3.2 × 3.2 mm) are the small, fast demo covering T12 to the upper thighs; ``(300, 512, 512)``
    at ``(2.5, 0.8, 0.8)`` mm reaches the knees. ``lumen_hu``: 40 for non-contrast, ~350 for CTA
    (organs enhance with it). ``plaques``: ``"random"`` (seeded; always includes two posterior aortic
    plaques a few mm from the vertebral bodies), ``"none"``, or a list of :class:`PlaqueSpec`.
    ``plaque_rate`` scales the random counts. ``metal``: None, ``"stent"`` (left common iliac) or
    ``"screw"`` (left L4 pedicle), with streaks. ``vein_hu``: HU of the veins (IVC, iliac, femoral);
    None = 45 HU without contrast and, on CTA, the arterial-phase lag 40 + 0.35 × (``lumen_hu`` − 40)
    (≈ 150 HU at 350); pass ``vein_hu=lumen_hu`` for a portal/late phase. Other arguments: see
    :class:`CtPhysics`.
    """
    if metal not in (None, "stent", "screw"):
        raise InputError(f"metal must be None, 'stent' or 'screw', got {metal!r}")
    phys = CtPhysics(slice_thickness_mm, ssp_blur_fwhm_mm, psf_fwhm_mm, noise_sd_hu, noise_corr_fwhm_mm, supersample,
                     hu_per_mg_cm3).resolved(spacing_mm[0])
    grid = make_grid(shape, spacing_mm, z_top_mm=0.0)
    rng = np.random.default_rng(seed)
    contrast = lumen_hu > 100.0
    if vein_hu is None:
        vein_hu = 40.0 + 0.35 * (lumen_hu - 40.0) if contrast else TISSUE_HU["vein"]
    canvas = Canvas.empty(grid, TISSUE_HU["air"])
    _paint_anatomy(canvas, rng, lumen_hu=lumen_hu, contrast=contrast)
    vessels = abdominal_vessels()  # the course as painted (and as random plaques are drawn on it)
    z_iliac_femoral = iliac_femoral_boundary_z_mm()
    labelled, moves = _label_convention(vessels, z_iliac_femoral)
    veins = abdominal_veins()
    # a generator of its own: the fat planes leave the main stream (texture, plaques, noise) as it was
    _paint_fat_planes(canvas, vessels, veins, np.random.default_rng([seed, 1]))
    _paint_veins(canvas, veins, float(vein_hu))
    paint_vessels(canvas, vessels, LABEL_IDS, wall_hu=TISSUE_HU["wall"], lumen_hu=lumen_hu)
    canvas.labels[canvas.labels == _CAVITY] = 0
    _relabel_at_plane(canvas, z_iliac_femoral)
    by_name = {v.name: v for v in vessels}
    specs = _choose_plaques(rng, vessels, plaques, plaque_rate, moves)
    if not isinstance(plaques, str):  # the user's plaques are given along the labelled vessels
        specs = [_label_to_course(spec, moves, {v.name: v for v in labelled}) for spec in specs]
    streaks, metal_info = None, None
    if metal is not None:
        streaks, metal_info = _add_metal(canvas, metal, by_name, rng)
    sectors_specs = place_sectors(specs, by_name, grid, drop_outside=isinstance(plaques, str))
    sectors = [(sector, physics.ha_density_to_hu(spec.density_mg_cm3, hu_per_mg_cm3=hu_per_mg_cm3),
                TISSUE_HU["wall"]) for spec, sector in sectors_specs]
    bone_labels = canvas.labels.copy()
    hu, fraction, ids, voxelised = render_ct(canvas, sectors, phys, rng, streaks=streaks)
    # Truth per plaque along the labelled vessels: the shapes are those painted, only their names move.
    labelled_specs = [(_course_to_label(spec, moves), sector) for spec, sector in sectors_specs]
    records = plaque_records(labelled_specs, voxelised, phys, bone_labels, grid,
                             [LABEL_IDS[n] for n in BONE_NAMES] + [LABEL_IDS["metal_implant"]])
    # The implant's name is listed only when the phantom has one that carries a label (the screw).
    names = {i: n for n, i in LABEL_IDS.items() if n != "metal_implant" or metal == "screw"}
    params = {"seed": seed, "shape": list(shape), "spacing_mm": list(spacing_mm), "lumen_hu": lumen_hu,
              "plaques": plaques if isinstance(plaques, str) else [asdict(p) for p in plaques],
              "plaque_rate": plaque_rate, "metal": metal, "vein_hu": float(vein_hu), "physics": asdict(phys)}
    L = abdominal_layout()
    truth = {
        "schema_version": TRUTH_SCHEMA_VERSION, "kind": "vascular", "seed": seed, "parameters": params,
        "parameters_hash": spec_hash(params), "contrast": contrast,
        "hu_model": {"formula": "plaque HU = hu_per_mg_cm3 * density_mg_cm3 (over water, 0 HU)",
                     "hu_per_mg_cm3": hu_per_mg_cm3, "calibration_factor_mg_cm3_per_hu": 1.0 / hu_per_mg_cm3,
                     "wall_hu": TISSUE_HU["wall"], "lumen_hu": lumen_hu, "vein_hu": float(vein_hu),
                     "tissue_hu": TISSUE_HU},
        "mask_definition": "vessel labels are lumen + wall; calcium lies in the wall, from the lumen surface outwards",
        "veins": {name: {"axial_ellipse_knots_lps_mm": [dict(zip(("z", "x", "y", "semi_x", "semi_y"), k))
                                                        for k in knots], "hu": float(vein_hu)}
                  for name, knots in veins.items()},
        "label_groups": {"iliac_artery_left": ["common_iliac_artery_left", "external_iliac_artery_left"],
                         "iliac_artery_right": ["common_iliac_artery_right", "external_iliac_artery_right"]},
        "structures": structure_truth(list(VESSEL_NAMES), records),
        "plaques": records,
        "vessels": {v.name: {"centreline_lps_mm": [list(p) for p in v.points],
                             "lumen_radius_mm": list(v.lumen_radius_mm),
                             "wall_mm": v.wall_mm} for v in labelled},
        "iliac_femoral_boundary": {"rule": ILIAC_FEMORAL_RULE, "z_mm": z_iliac_femoral},
        "landmarks": {"vertebrae": L["vertebrae"], "sacrum_z_range_mm": [L["sacrum_bottom_mm"], L["sacrum_top_mm"]],
                      "z_aortic_bifurcation_mm": L["z_bifurcation_mm"], "z_femoral_heads_mm": L["z_hip_mm"],
                      "z_pubic_symphysis_top_mm": L["z_pubic_symphysis_top_mm"]},
        "metal": metal_info,
    }
    truth["total"] = {k: float(sum(r[k] for r in truth["structures"].values()))
                      for k in ("calcium_volume_mm3", "calcium_volume_voxelised_mm3", "mass_mg")}
    truth["total"]["n_lesions"] = len(records)
    volume = Volume(hu=hu, grid=grid, info=scan_info(grid, phys, "vascalc vascular phantom", contrast))
    return Phantom(volume=volume, labels=LabelMap(labels=canvas.labels, grid=grid, names=names),
                   calcium_fraction=fraction, plaque_ids=ids, truth=truth)


def _label_convention(course: list[Vessel], z_mm: float) -> tuple[list[Vessel], dict[str, tuple[str, float, float]]]:
    """The vessels as labelled: each external iliac runs down to the plane ``z_mm``
    (:func:`iliac_femoral_boundary_z_mm`), its femoral starts there. Also returns, per femoral, (its
    external iliac, the external iliac's course length, arc length of the plane along the femoral's
    course), all mm, to carry plaque positions between the two."""
    by_name = {v.name: v for v in course}
    moves = {}
    for tag in ("left", "right"):
        upper, lower = by_name[f"external_iliac_artery_{tag}"], by_name[f"femoral_artery_{tag}"]
        new_upper, new_lower, s_cut = split_at_plane(upper, lower, z_mm)
        moves[lower.name] = (upper.name, upper.length_mm(), s_cut)
        by_name[upper.name], by_name[lower.name] = new_upper, new_lower
    return [by_name[v.name] for v in course], moves


def _course_to_label(spec: PlaqueSpec, moves: dict) -> PlaqueSpec:
    """A plaque placed on the painted course, named and positioned along the labelled vessels."""
    if spec.vessel not in moves:
        return spec
    upper, upper_mm, s_cut = moves[spec.vessel]
    if spec.start_mm + spec.length_mm <= s_cut:
        return replace(spec, vessel=upper, start_mm=upper_mm + spec.start_mm)
    if spec.start_mm >= s_cut:
        return replace(spec, start_mm=spec.start_mm - s_cut)
    raise GeometryError(f"a plaque on {spec.vessel} at {spec.start_mm} mm crosses the iliac/femoral boundary; "
                        "move it above or below the top of the pubic symphysis")


def _label_to_course(spec: PlaqueSpec, moves: dict, labelled: dict[str, Vessel]) -> PlaqueSpec:
    """A plaque given along a labelled vessel, positioned on the painted course (inverse of
    :func:`_course_to_label`); it must lie on one straight piece of the labelled vessel."""
    if spec.vessel in labelled:
        labelled[spec.vessel].sector(spec)  # the user's errors named in the user's coordinates
    for lower, (upper, upper_mm, s_cut) in moves.items():
        if spec.vessel == lower:
            return replace(spec, start_mm=spec.start_mm + s_cut)
        if spec.vessel == upper and spec.start_mm >= upper_mm:
            return replace(spec, vessel=lower, start_mm=spec.start_mm - upper_mm)
    return spec


def _relabel_at_plane(canvas: Canvas, z_mm: float) -> None:
    """External iliac and femoral labels split by the axial plane ``z_mm`` (voxel centres at or above
    it are iliac): the painted tubes overlap at their junction, the convention is a plane."""
    k = int(np.searchsorted(axis_coords_mm(canvas.grid)[0], z_mm))  # z grows with the index
    top, bottom = canvas.labels[k:], canvas.labels[:k]  # views
    for tag in ("left", "right"):
        eia, fem = LABEL_IDS[f"external_iliac_artery_{tag}"], LABEL_IDS[f"femoral_artery_{tag}"]
        top[top == fem] = eia
        bottom[bottom == eia] = fem


def _choose_plaques(rng: np.random.Generator, vessels: list[Vessel], plaques, rate: float,
                    moves: dict) -> list[PlaqueSpec]:
    if isinstance(plaques, str):
        if plaques == "none":
            return []
        if plaques != "random":
            raise InputError(f"plaques must be 'random', 'none' or a list of PlaqueSpec, got {plaques!r}")
    else:
        return list(plaques)
    L = abdominal_layout()
    aorta = next(v for v in vessels if v.name == "aorta")
    # Aortic arc length of each branch origin, to keep plaques off the branch ostia.
    starts = np.concatenate([[0.0], np.cumsum(aorta.segment_lengths())])
    z_pts = np.array([p[2] for p in aorta.points])
    def s_at(z: float) -> float:
        return float(np.interp(-z, -z_pts, starts))
    avoid = {"aorta": [(s_at(z) - 8.0, s_at(z) + 8.0) for z in (L["z_celiac_mm"], L["z_celiac_mm"] - 14.0,
                                                                L["z_renal_mm"])]}
    # Two posterior plaques a few mm from the L2–L4 bodies: the failure mode of bone next to calcium.
    fixed = []
    for z_mid, length in ((-97.0, 10.0), (-150.0, 14.0)):
        s0 = s_at(z_mid) - length / 2
        avoid["aorta"].append((s0, s0 + length))
        fixed.append(PlaqueSpec("aorta", round(s0, 3), length, round(float(rng.uniform(50, 100)), 2),
                                180.0 + round(float(rng.uniform(-15, 15)), 2), round(float(rng.uniform(1.0, 2.0)), 3),
                                round(float(rng.uniform(300, 900)), 1)))
    means = {"aorta": 6.0, "common_iliac_artery_left": 2.0, "common_iliac_artery_right": 2.0,
             "external_iliac_artery_left": 1.0, "external_iliac_artery_right": 1.0, "femoral_artery_left": 3.0,
             "femoral_artery_right": 3.0, "renal_artery_left": 0.4, "renal_artery_right": 0.4, "celiac_trunk": 0.3,
             "superior_mesenteric_artery": 0.5}
    means = {k: v * rate for k, v in means.items()}
    lengths = {"aorta": (2.0, 25.0), "femoral_artery_left": (1.5, 15.0), "femoral_artery_right": (1.5, 15.0)}
    drawn = random_plaques(rng, vessels, means, length_range_mm=lengths, avoid=avoid, end_margin_mm={"aorta": 15.0})
    return fixed + _clear_of_plane(drawn, {v.name: v for v in vessels}, moves)


def _clear_of_plane(specs: list[PlaqueSpec], vessels: dict[str, Vessel], moves: dict) -> list[PlaqueSpec]:
    """Random plaques slid ≥ 2 mm clear of the iliac/femoral plane, so that each lies wholly in one
    label and its truth belongs to one vessel.

    A plaque that comes within 2 mm of the plane moves along its straight piece to the side that holds
    its centre (else the other side); one that fits on neither side (piece ends, the start margin,
    another plaque within 2 mm) is dropped. The draws are not repeated, so the random stream, and with
    it every other plaque and the noise, stay as they were (the label convention moved, not the phantom)."""
    out = list(specs)
    for i, spec in enumerate(specs):
        if spec.vessel not in moves:
            continue
        s_cut, length = moves[spec.vessel][2], spec.length_mm
        if not (spec.start_mm - 2.0 < s_cut < spec.start_mm + length + 2.0):
            continue
        v = vessels[spec.vessel]
        starts = np.concatenate([[0.0], np.cumsum(v.segment_lengths())])
        k = int(np.searchsorted(starts, s_cut, side="right") - 1)
        lo = starts[k] + (v.start_margin_mm if k == 0 else 2.0)
        hi = starts[k + 1] - 2.0 - length
        others = [(o.start_mm, o.start_mm + o.length_mm) for j, o in enumerate(out)
                  if o is not None and j != i and o.vessel == spec.vessel]
        above, below = round(s_cut - 2.0 - length, 3) - 0.001, round(s_cut + 2.0, 3) + 0.001
        sides = (above, below) if spec.start_mm + 0.5 * length < s_cut else (below, above)
        out[i] = None
        for s0 in sides:
            if lo <= s0 <= hi and not any(s0 - 2.0 < b and s0 + length + 2.0 > a for a, b in others):
                out[i] = replace(spec, start_mm=round(s0, 3))
                break
    return [spec for spec in out if spec is not None]


def _add_metal(canvas: Canvas, metal: str, vessels: dict[str, Vessel], rng: np.random.Generator):
    metal_id = LABEL_IDS["metal_implant"]
    if metal == "screw":
        v = abdominal_layout()["vertebrae"]["vertebrae_L4"]
        zc = 0.5 * (v["z_top_mm"] + v["z_bottom_mm"])
        a = (18.0, v["centre_y_mm"] + v["half_depth_mm"] + 30.0, zc)
        b = (7.0, v["centre_y_mm"] - 4.0, zc)
        paint_capsule(canvas, a, b, 3.0, TISSUE_HU["metal"], metal_id)
        mask = canvas.labels == metal_id
        info = {"kind": "screw", "where": "left L4 pedicle", "from_lps_mm": list(a), "to_lps_mm": list(b),
                "radius_mm": 3.0, "hu": TISSUE_HU["metal"], "label": "metal_implant"}
    else:
        v = vessels["common_iliac_artery_left"]
        p0, p1 = np.asarray(v.points[0]), np.asarray(v.points[1])
        u = (p1 - p0) / np.linalg.norm(p1 - p0)
        a, b = p0 + 20.0 * u, p0 + 45.0 * u
        r = v.lumen_radius_mm[0]
        # A stent is a thin metal mesh on the lumen surface: a tube shell 0.4 mm thick, which partial
        # volume turns into a bright ring well below the HU of solid metal.
        sl = index_slices(canvas.grid, np.minimum(a, b) - r - 1, np.maximum(a, b) + r + 1)
        Z, Y, X = canvas.block_coords(sl)
        d = segment_distance((X, Y, Z), a, b)
        h = 0.5 * (canvas.grid.spacing_mm[1] + canvas.grid.spacing_mm[2])
        w = np.clip(0.5 - (np.abs(d - (r - 0.2)) - 0.2) / h, 0, 1).astype(np.float32)
        w *= np.float32(min(1.0, 0.4 / h + 0.5))  # a strut thinner than a voxel never fills one
        canvas.hu[sl] += w * (np.float32(TISSUE_HU["metal"]) - canvas.hu[sl])
        mask = np.zeros(canvas.grid.shape, bool)
        mask[sl] = w >= 0.25
        # The stent keeps the vessel's label (it lies in the lumen); its mask only drives the streaks.
        info = {"kind": "stent", "where": "left common iliac artery", "from_lps_mm": a.tolist(),
                "to_lps_mm": b.tolist(), "radius_mm": r, "strut_thickness_mm": 0.4, "hu": TISSUE_HU["metal"],
                "label": None}
    return metal_streaks(mask, canvas.grid, rng), info
