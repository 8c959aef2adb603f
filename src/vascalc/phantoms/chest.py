"""Chest phantom for coronary calcium: heart, aortic root, RCA, left main + LAD, LCX, lungs, spine.

Layout in LPS mm, z = 0 at the top slice's upper edge, heart centred 90 mm below. The coronaries
run in the epicardial fat just outside an ellipsoidal heart, along the atrioventricular and
interventricular grooves; they are simplified polylines, not an atlas.
"""

from __future__ import annotations

from dataclasses import asdict

import numpy as np

from vascalc.errors import InputError
from vascalc.imaging.labelmap import LabelMap
from vascalc.imaging.volume import Volume
from vascalc.phantoms import physics
from vascalc.phantoms.core import (TRUTH_SCHEMA_VERSION, CtPhysics, Vessel, make_grid, paint_vessels, place_sectors, plaque_records,
                                   random_plaques, render_ct, scan_info, spec_hash, structure_truth)
from vascalc.phantoms.geometry import Canvas, ellipse_stack_sdf, paint, paint_ellipsoid
from vascalc.phantoms.types import Phantom, PlaqueSpec
from vascalc.phantoms.vascular import TISSUE_HU

HEART_CENTRE = np.array([15.0, -20.0, -90.0])
HEART_SEMI = np.array([55.0, 45.0, 60.0])
VESSEL_NAMES = ("aorta", "rca", "left_main", "lad", "lcx")
CHEST_VERTEBRAE = tuple(f"vertebrae_T{i}" for i in range(5, 11))
LABEL_IDS = {"aorta": 1, "rca": 2, "lad": 3, "lcx": 4, "heart": 10,
             **{name: 20 + i for i, name in enumerate(CHEST_VERTEBRAE)}}
#: The left main is labelled and scored with the LAD (as in S5: "LM + LAD"); it keeps its own truth entry.
LABEL_OF_VESSEL = {"aorta": "aorta", "rca": "rca", "left_main": "lad", "lad": "lad", "lcx": "lcx"}


def _on_heart(theta_deg: float, z: float, offset_mm: float) -> tuple[float, float, float]:
    """Point ``offset_mm`` outside the heart ellipsoid at azimuth θ (0 = left, 270 = anterior) and height z."""
    c, s = HEART_CENTRE, HEART_SEMI
    scale = np.sqrt(max(0.05, 1.0 - ((z - c[2]) / s[2]) ** 2))
    t = np.deg2rad(theta_deg)
    return (float(c[0] + (s[0] * scale + offset_mm) * np.cos(t)), float(c[1] + (s[1] * scale + offset_mm) * np.sin(t)),
            float(z))


def chest_vessels() -> list[Vessel]:
    """Coronary centrelines on the heart surface and the aorta (root, ascending, descending)."""
    wall = 1.0
    rca = [(-6.0, -40.0, -46.0)] + [_on_heart(t, z, 4.0) for t, z in
                                    ((235, -52), (212, -62), (192, -78), (175, -98), (150, -116), (122, -126))]
    lm = [(8.0, -40.0, -44.0), _on_heart(282, -47, 4.5)]
    lad = [lm[-1]] + [_on_heart(t, z, 4.0) for t, z in ((290, -62), (296, -82), (300, -104), (302, -124), (300, -140))]
    lcx = [lm[-1]] + [_on_heart(t, z, 4.0) for t, z in ((320, -52), (350, -58), (15, -66), (42, -76), (65, -86))]
    return [
        Vessel("rca", tuple(rca), (1.8,) * (len(rca) - 1), wall, start_margin_mm=4.0),
        Vessel("lad", tuple(lad), (1.7,) * (len(lad) - 1), wall, start_margin_mm=3.0),
        Vessel("lcx", tuple(lcx), (1.5,) * (len(lcx) - 1), wall, start_margin_mm=3.0),
        Vessel("left_main", tuple(lm), (2.2,), wall, start_margin_mm=3.0),
        Vessel("aorta", ((0.0, -28.0, -56.0), (-2.0, -32.0, 10.0)), (14.0,), 2.0, start_margin_mm=20.0),
    ]


def make_chest_phantom(seed: int = 0, *, shape: tuple[int, int, int] = (64, 256, 256),
                       spacing_mm: tuple[float, float, float] = (2.5, 1.25, 1.25),
                       slice_thickness_mm: float | None = None, noise_sd_hu: float = 15.0, lumen_hu: float = 40.0,
                       plaques: str | list[PlaqueSpec] = "random", supersample: int = 4, psf_fwhm_mm: float = 1.0,
                       ssp_blur_fwhm_mm: float | None = None, noise_corr_fwhm_mm: float = 0.0,
                       hu_per_mg_cm3: float = physics.HU_PER_MG_HA_CM3, plaque_rate: float = 1.0) -> Phantom:
    """Non-gated chest CT phantom with coronary (RCA, LM+LAD, LCX) and aortic calcium of exact truth.

    Labels: ``heart``, ``aorta`` (root + ascending + descending), ``rca``, ``lad`` (left main
    included, ``truth["lad_includes_left_main"] = True``), ``lcx``, ``vertebrae_T5``…``T10``.
    Coronary walls are 1 mm thick, so coronary plaques are ≤ 1 mm thick: thin, small calcium.
    Arguments as :func:`vascalc.phantoms.make_vascular_phantom`.
    """
    phys = CtPhysics(slice_thickness_mm, ssp_blur_fwhm_mm, psf_fwhm_mm, noise_sd_hu, noise_corr_fwhm_mm, supersample,
                     hu_per_mg_cm3).resolved(spacing_mm[0])
    grid = make_grid(shape, spacing_mm, z_top_mm=0.0)
    rng = np.random.default_rng(seed)
    H = TISSUE_HU
    contrast = lumen_hu > 100.0
    canvas = Canvas.empty(grid, H["air"])
    top, bottom = 20.0, -250.0
    for shrink, value in ((0.0, H["fat"]), (15.0, H["muscle"]), (28.0, H["soft_tissue"])):
        paint(canvas, (-170, -120, bottom), (170, 140, top),
              ellipse_stack_sdf(bottom, top, lambda Z: (0.0, 10.0), lambda Z, s=shrink: (160.0 - s, 118.0 - s)), value)
    for side in (1, -1):
        paint(canvas, (-150, -100, bottom), (150, 110, top),
              ellipse_stack_sdf(bottom, top, lambda Z, sd=side: (70.0 * sd, 15.0), lambda Z: (62.0, 85.0)), -850.0)
    # Spine (T5–T10 bodies with discs) behind the heart.
    paint(canvas, (-25, 50, bottom), (25, 95, top),
          ellipse_stack_sdf(bottom, top, lambda Z: (0.0, 72.0), lambda Z: (17.0, 14.0)), H["disc"])
    z = -5.0
    vert_truth = {}
    for name in CHEST_VERTEBRAE:
        z0, z1 = z - 21.0, z
        for d, shrink, value in ((0.0, 0.0, H["cortical"]), (1.2, 1.4, H["trabecular"])):
            paint(canvas, (-20, 55, z0), (20, 90, z1), ellipse_stack_sdf(z0 + d, z1 - d, lambda Z: (0.0, 72.0),
                                                                         lambda Z, s=shrink: (17.0 - s, 14.0 - s)),
                  value, LABEL_IDS[name])
        vert_truth[name] = {"z_top_mm": z1, "z_bottom_mm": z0}
        z = z0 - 5.0
    # Heart: epicardial fat, myocardium, blood pool.
    paint_ellipsoid(canvas, HEART_CENTRE, HEART_SEMI + 7.0, H["fat"])
    paint_ellipsoid(canvas, HEART_CENTRE, HEART_SEMI, H["muscle"], LABEL_IDS["heart"])
    paint_ellipsoid(canvas, HEART_CENTRE + np.array([-5.0, 0.0, 5.0]), HEART_SEMI - 11.0, lumen_hu, LABEL_IDS["heart"])
    vessels = chest_vessels()
    desc = Vessel("aorta_descending", ((22.0, 45.0, 10.0), (16.0, 45.0, -240.0)), (12.0,), 2.0)
    ids_all = dict(LABEL_IDS, aorta_descending=LABEL_IDS["aorta"], left_main=LABEL_IDS["lad"])
    paint_vessels(canvas, [*vessels, desc], ids_all, wall_hu=H["wall"], lumen_hu=lumen_hu)
    by_name = {v.name: v for v in vessels}
    if isinstance(plaques, str):
        if plaques not in ("random", "none"):
            raise InputError(f"plaques must be 'random', 'none' or a list of PlaqueSpec, got {plaques!r}")
        specs = [] if plaques == "none" else random_plaques(
            rng, vessels, {k: v * plaque_rate for k, v in {"rca": 2.0, "lad": 2.5, "lcx": 1.5, "left_main": 0.5,
                                                           "aorta": 1.0}.items()},
            length_range_mm={"rca": (1.0, 8.0), "lad": (1.0, 8.0), "lcx": (1.0, 6.0), "left_main": (1.0, 4.0),
                             "aorta": (3.0, 15.0)}, density_range=(150.0, 900.0))
    else:
        specs = list(plaques)
    sectors_specs = place_sectors(specs, by_name, grid, drop_outside=isinstance(plaques, str))
    sectors = [(sec, physics.ha_density_to_hu(sp.density_mg_cm3, hu_per_mg_cm3=hu_per_mg_cm3), H["wall"])
               for sp, sec in sectors_specs]
    bone_labels = canvas.labels.copy()
    hu, fraction, ids, voxelised = render_ct(canvas, sectors, phys, rng)
    records = plaque_records(sectors_specs, voxelised, phys, bone_labels, grid, [LABEL_IDS[n] for n in CHEST_VERTEBRAE])
    structures = structure_truth(list(VESSEL_NAMES), records)
    lm = structures["left_main"]
    lad = structures["lad"]
    structures["lad"] = {k: (lad[k] + lm[k]) for k in ("calcium_volume_mm3", "calcium_volume_voxelised_mm3",
                                                       "mass_mg", "n_lesions", "plaque_ids")}
    structures["lad"]["plaque_ids"] = sorted(structures["lad"]["plaque_ids"])
    params = {"seed": seed, "shape": list(shape), "spacing_mm": list(spacing_mm), "lumen_hu": lumen_hu,
              "plaques": plaques if isinstance(plaques, str) else [asdict(p) for p in plaques],
              "plaque_rate": plaque_rate, "physics": asdict(phys)}
    truth = {
        "schema_version": TRUTH_SCHEMA_VERSION, "kind": "chest", "seed": seed, "parameters": params,
        "parameters_hash": spec_hash(params), "contrast": contrast,
        "hu_model": {"formula": "plaque HU = hu_per_mg_cm3 * density_mg_cm3 (over water, 0 HU)",
                     "hu_per_mg_cm3": hu_per_mg_cm3, "calibration_factor_mg_cm3_per_hu": 1.0 / hu_per_mg_cm3,
                     "wall_hu": H["wall"], "lumen_hu": lumen_hu},
        "mask_definition": "vessel labels are lumen + wall; calcium lies in the wall, from the lumen surface outwards",
        "lad_includes_left_main": True,
        "structures": structures, "plaques": records,
        "vessels": {v.name: {"centreline_lps_mm": [list(p) for p in v.points],
                             "lumen_radius_mm": list(v.lumen_radius_mm),
                             "wall_mm": v.wall_mm, "label": LABEL_OF_VESSEL[v.name]} for v in vessels},
        "landmarks": {"vertebrae": vert_truth, "heart_centre_lps_mm": HEART_CENTRE.tolist(),
                      "heart_semi_axes_mm": HEART_SEMI.tolist()},
    }
    truth["total"] = {k: float(sum(structures[n][k] for n in ("aorta", "rca", "lad", "lcx")))
                      for k in ("calcium_volume_mm3", "calcium_volume_voxelised_mm3", "mass_mg")}
    truth["total"]["n_lesions"] = len(records)
    volume = Volume(hu=hu, grid=grid, info=scan_info(grid, phys, "vascalc chest phantom", contrast))
    names = {i: n for n, i in LABEL_IDS.items()}
    return Phantom(volume=volume, labels=LabelMap(labels=canvas.labels, grid=grid, names=names),
                   calcium_fraction=fraction, plaque_ids=ids, truth=truth)
