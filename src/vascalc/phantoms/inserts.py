"""Insert phantom: hydroxyapatite cylinders in a water-equivalent body, like the QRM thorax phantom."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
from scipy import ndimage

from vascalc.errors import InputError
from vascalc.imaging.labelmap import LabelMap
from vascalc.imaging.volume import Volume
from vascalc.phantoms import physics
from vascalc.phantoms.core import TRUTH_SCHEMA_VERSION, CtPhysics, make_grid, render_ct, scan_info, spec_hash
from vascalc.phantoms.geometry import Canvas, WallSector, ellipse_stack_sdf, paint
from vascalc.phantoms.types import Phantom



def make_insert_phantom(seed: int = 0, *, shape: tuple[int, int, int] = (16, 400, 400),
                        spacing_mm: tuple[float, float, float] = (3.0, 0.8, 0.8),
                        densities_mg_cm3: tuple[float, ...] = (200.0, 400.0, 800.0),
                        diameters_mm: tuple[float, ...] = (1.0, 3.0, 5.0),
                        rod_densities_mg_cm3: tuple[float, ...] = (0.0, 100.0, 200.0),
                        rod_diameter_mm: float = 10.0, body_hu: float = 0.0,
                        slice_thickness_mm: float | None = None, noise_sd_hu: float = 15.0,
                        psf_fwhm_mm: float = 1.0, supersample: int = 4, ssp_blur_fwhm_mm: float | None = None,
                        noise_corr_fwhm_mm: float = 0.0,
                        hu_per_mg_cm3: float = physics.HU_PER_MG_HA_CM3) -> Phantom:
    """QRM-like calcium insert phantom with exact truth.

    A 300 × 200 mm elliptic water-equivalent body (``body_hu``) holds one calcium insert per
    (density, diameter) pair: a cylinder along z whose length equals its diameter (as the QRM cardiac
    calcification insert), on a ring of radius 35 mm, all centred on the same z; and calibration rods
    (``rod_diameter_mm`` wide, through every slice) of ``rod_densities_mg_cm3`` on a ring of 75 mm.
    HU of an insert = ``body_hu + hu_per_mg_cm3 · ρ`` (:func:`physics.ha_density_to_hu`); mass = ρ·V.
    Labels: ``insert_<ρ>mg_<d>mm`` and ``rod_<ρ>mg``. ``truth["rods"]`` gives each rod's true HU and
    the mean HU measured in its central ROI (eroded by 2 mm) of the generated image.
    """
    if not densities_mg_cm3 or not diameters_mm:
        raise InputError("give at least one insert density and one insert diameter")
    phys = CtPhysics(slice_thickness_mm, ssp_blur_fwhm_mm, psf_fwhm_mm, noise_sd_hu, noise_corr_fwhm_mm,
                     supersample, hu_per_mg_cm3).resolved(spacing_mm[0])
    grid = make_grid(shape, spacing_mm, z_top_mm=0.0)
    z_mid = grid.origin_lps_mm[2] + 0.5 * (grid.shape[0] - 1) * grid.spacing_mm[0]
    z_lo = grid.origin_lps_mm[2] - 0.5 * grid.spacing_mm[0]
    canvas = Canvas.empty(grid, -1000.0)
    paint(canvas, (-150, -100, z_lo), (150, 100, 0.0),
          ellipse_stack_sdf(z_lo, 0.0, lambda Z: (0.0, 0.0), lambda Z: (150.0, 100.0)), body_hu)
    names: dict[int, str] = {}
    sectors = []
    inserts = []
    n_ins = len(densities_mg_cm3) * len(diameters_mm)
    k = 0
    for rho in densities_mg_cm3:
        for d in diameters_mm:
            ang = 2 * np.pi * k / n_ins
            cx, cy = 35.0 * np.cos(ang), 35.0 * np.sin(ang)
            sector = WallSector(a=(cx, cy, z_mid + d / 2), u=(0.0, 0.0, -1.0), s0=0.0, s1=float(d), r0=0.0,
                                r1=float(d) / 2, angle_rad=0.0, half_arc_rad=float(np.pi))
            hu = float(physics.ha_density_to_hu(rho, hu_per_mg_cm3=hu_per_mg_cm3, hu_matrix=body_hu))
            sectors.append((sector, hu, body_hu))
            name = f"insert_{rho:g}mg_{d:g}mm"
            names[len(names) + 1] = name
            inserts.append({"name": name, "density_mg_cm3": rho, "diameter_mm": d, "length_mm": d, "hu": hu,
                            "centre_lps_mm": [round(cx, 3), round(cy, 3), round(z_mid, 3)],
                            "volume_mm3": sector.volume_mm3, "mass_mg": rho * sector.volume_mm3 / 1000.0})
            k += 1
    rods = []
    n_rod = len(rod_densities_mg_cm3)
    for j, rho in enumerate(rod_densities_mg_cm3):
        ang = 2 * np.pi * j / max(n_rod, 1) + np.pi / 7
        cx, cy = 75.0 * np.cos(ang), 75.0 * np.sin(ang)
        length = grid.shape[0] * grid.spacing_mm[0] + 20.0
        sector = WallSector(a=(cx, cy, 10.0), u=(0.0, 0.0, -1.0), s0=0.0, s1=length, r0=0.0,
                            r1=rod_diameter_mm / 2, angle_rad=0.0, half_arc_rad=float(np.pi))
        hu = float(physics.ha_density_to_hu(rho, hu_per_mg_cm3=hu_per_mg_cm3, hu_matrix=body_hu))
        sectors.append((sector, hu, body_hu))
        name = f"rod_{rho:g}mg"
        names[len(names) + 1] = name
        rods.append({"name": name, "density_mg_cm3": rho, "diameter_mm": rod_diameter_mm, "hu_true": hu,
                     "centre_xy_mm": [round(cx, 3), round(cy, 3)]})
    rng = np.random.default_rng(seed)
    hu, fraction, ids, voxelised = render_ct(canvas, sectors, phys, rng)
    labels = np.where(fraction > 0, ids, 0).astype(np.uint16)
    # Label an insert's voxel where it covers at least half of it (the plaque-id map keeps the rest).
    labels = np.where(fraction >= 0.5, labels, 0).astype(np.uint16)
    for rec, vox in zip(inserts, voxelised[:n_ins]):
        rec["volume_voxelised_mm3"] = vox
    for j, rec in enumerate(rods):
        core = ndimage.binary_erosion(labels == n_ins + j + 1,
                                      iterations=max(1, int(round(2.0 / grid.spacing_mm[1]))))
        rec["hu_mean_measured"] = float(hu[core].mean()) if core.any() else None
        rec["hu_sd_measured"] = float(hu[core].std()) if core.any() else None
    params = {"seed": seed, "shape": list(shape), "spacing_mm": list(spacing_mm),
              "densities_mg_cm3": list(densities_mg_cm3), "diameters_mm": list(diameters_mm),
              "rod_densities_mg_cm3": list(rod_densities_mg_cm3), "rod_diameter_mm": rod_diameter_mm,
              "body_hu": body_hu, "physics": asdict(phys)}
    truth = {
        "schema_version": TRUTH_SCHEMA_VERSION, "kind": "inserts", "seed": seed, "parameters": params,
        "parameters_hash": spec_hash(params),
        "hu_model": {"formula": "HU = body_hu + hu_per_mg_cm3 * density_mg_cm3", "hu_per_mg_cm3": hu_per_mg_cm3,
                     "calibration_factor_mg_cm3_per_hu": 1.0 / hu_per_mg_cm3},
        "mask_definition": "insert/rod labels are voxels at least half covered by the cylinder",
        "inserts": inserts, "rods": rods,
        "structures": {r["name"]: {"calcium_volume_mm3": r["volume_mm3"],
                                   "calcium_volume_voxelised_mm3": r["volume_voxelised_mm3"],
                                   "mass_mg": r["mass_mg"], "n_lesions": 1, "plaque_ids": [i + 1]}
                       for i, r in enumerate(inserts)},
        "plaques": [{"id": i + 1, "vessel": r["name"], "density_mg_cm3": r["density_mg_cm3"],
                     "volume_mm3": r["volume_mm3"], "volume_voxelised_mm3": r["volume_voxelised_mm3"],
                     "mass_mg": r["mass_mg"], "hu": r["hu"]} for i, r in enumerate(inserts)],
    }
    truth["total"] = {"calcium_volume_mm3": float(sum(r["volume_mm3"] for r in inserts)),
                      "calcium_volume_voxelised_mm3": float(sum(r["volume_voxelised_mm3"] for r in inserts)),
                      "mass_mg": float(sum(r["mass_mg"] for r in inserts)), "n_lesions": len(inserts)}
    ids = np.where(ids > n_ins, 0, ids)
    ca_fraction = np.zeros_like(fraction)
    ins_mask = ids > 0
    ca_fraction[ins_mask] = fraction[ins_mask]
    volume = Volume(hu=hu, grid=grid, info=scan_info(grid, phys, "vascalc insert phantom", False))
    return Phantom(volume=volume, labels=LabelMap(labels=labels, grid=grid, names=names),
                   calcium_fraction=ca_fraction, plaque_ids=ids.astype(np.int32), truth=truth)
