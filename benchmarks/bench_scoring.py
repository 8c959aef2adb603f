"""Timing of ``score_calcium`` on a 512×512×400 int16 CT with a realistic aorta (hard target ≤ 1 s).

The aorta is a 25 mm tube through all 400 slices whose centre drifts by ±15 mm (so its bounding box
is realistic, not a thin straight column), a vertebral body sits behind it (bone exclusion is
exercised), 60 wall plaques of 150–900 HU are spread along it, and the tissue has 15 HU noise.

Run: ``python benchmarks/bench_scoring.py [--method agatston|adaptive|...]``; prints the median of
five runs and the peak memory that scoring allocates (tracemalloc, separate run).

``--phantom-accuracy DZ`` instead scores vascalc's vascular phantoms (seeds 1–4, 512×512 at
0.8 mm, slices of DZ mm) and prints the MAPE of the partial-volume-aware mass and volume and of the
130 HU volume against truth, over vessels with ≥ 5 mm³ of calcium (issue target: mass ≤ 5 %,
volume ≤ 10 %, zero-calcium vessels ≤ 5 mm³).
"""

from __future__ import annotations

import argparse
import time
import tracemalloc

import numpy as np

from vascalc.calcium import ScoringOptions, score_calcium
from vascalc.imaging.grid import Grid


def build(seed: int = 0, shape=(400, 512, 512), spacing=(1.0, 0.78, 0.78)):
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    dz, dy, dx = spacing
    hu = rng.normal(40, 15, size=shape).astype(np.int16)
    vessels = np.zeros(shape, dtype=np.uint8)
    bone = np.zeros(shape, dtype=bool)
    yy, xx = np.mgrid[0:ny, 0:nx]
    z = np.arange(nz)
    cy = 220 + (15 / dy) * np.sin(z / nz * 2 * np.pi)
    cx = 256 + (15 / dx) * np.cos(z / nz * 3 * np.pi)
    r_px = 12.5 / dy
    for k in range(nz):
        # only a window around the centre is touched, so building takes seconds
        y0, y1 = int(cy[k] - 60), int(cy[k] + 60)
        x0, x1 = int(cx[k] - 60), int(cx[k] + 60)
        d2 = (yy[y0:y1, x0:x1] - cy[k]) ** 2 + (xx[y0:y1, x0:x1] - cx[k]) ** 2
        vessels[k, y0:y1, x0:x1][d2 <= r_px ** 2] = 1
        # vertebral body 30 mm behind the aorta centre, 35 mm across
        d2b = (yy[y0:y1 + 60, x0:x1] - (cy[k] + 30 / dy + 22 / dy)) ** 2 + (xx[y0:y1 + 60, x0:x1] - cx[k]) ** 2
        body = d2b <= (17.5 / dy) ** 2
        bone[k, y0:y1 + 60, x0:x1][body] = True
        hu[k, y0:y1 + 60, x0:x1][body] = 400
    for _ in range(60):
        k = int(rng.integers(5, nz - 5))
        angle = rng.uniform(0, 2 * np.pi)
        py = int(round(cy[k] + (r_px - 0.5) * np.sin(angle)))
        px = int(round(cx[k] + (r_px - 0.5) * np.cos(angle)))
        size = int(rng.integers(1, 4))
        hu[k - size:k + size + 1, py - size:py + size + 1, px - size:px + size + 1] = int(rng.integers(150, 900))
    grid = Grid(shape=shape, spacing_mm=spacing)
    return hu, vessels, bone, grid


def phantom_accuracy(dz: float, seeds=(1, 2, 3, 4)) -> None:
    from vascalc.anatomy import taxonomy
    from vascalc.phantoms import make_vascular_phantom
    mass_err, vol_err, thr_err, zero = [], [], [], []
    for seed in seeds:
        ph = make_vascular_phantom(seed=seed, shape=(int(300 / dz), 512, 512), spacing_mm=(dz, 0.8, 0.8))
        lm = ph.labels
        arteries = {i: n for i, n in lm.names.items() if taxonomy.is_scored_artery(n)}
        bone = np.isin(lm.labels, [i for i, n in lm.names.items() if taxonomy.is_bone(n)])
        vessels = np.where(np.isin(lm.labels, list(arteries)), lm.labels, 0)
        result = score_calcium(ph.volume.hu, vessels, arteries, ph.volume.grid, "agatston", bone_mask=bone,
                               kvp=ph.volume.info.kvp, slice_thickness_mm=ph.volume.info.slice_thickness_mm)
        for s in result.structures:
            truth = ph.truth_for(s.name)
            if truth.calcium_volume_mm3 < 5:
                zero.append(s.integrated_volume_mm3 or 0.0)
                continue
            mass_err.append(abs((s.integrated_mass_mg or 0.0) / truth.mass_mg - 1))
            vol_err.append(abs((s.integrated_volume_mm3 or 0.0) / truth.calcium_volume_mm3 - 1))
            thr_err.append(abs(s.calcium_volume_mm3 / truth.calcium_volume_mm3 - 1))
    print(f"slices {dz:g} mm, {len(mass_err)} vessels with ≥ 5 mm³: integrated mass MAPE "
          f"{100 * np.mean(mass_err):.1f}% (median {100 * np.median(mass_err):.1f}%), integrated volume MAPE "
          f"{100 * np.mean(vol_err):.1f}% (median {100 * np.median(vol_err):.1f}%), 130 HU volume MAPE "
          f"{100 * np.mean(thr_err):.1f}%; zero-calcium vessels: max integrated volume "
          f"{max(zero, default=0.0):.1f} mm³")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--method", default="agatston")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--phantom-accuracy", type=float, default=None, metavar="DZ")
    args = parser.parse_args()
    if args.phantom_accuracy is not None:
        phantom_accuracy(args.phantom_accuracy)
        return
    t0 = time.perf_counter()
    hu, vessels, bone, grid = build()
    print(f"built {hu.shape} {hu.dtype} volume in {time.perf_counter() - t0:.1f} s; "
          f"aorta voxels {int((vessels > 0).sum())}")
    options = ScoringOptions()
    times = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        result = score_calcium(hu, vessels, {1: "aorta"}, grid, method=args.method, options=options,
                               bone_mask=bone, kvp=120.0, slice_thickness_mm=1.0)
        times.append(time.perf_counter() - t)
    total = result.total
    print(f"score_calcium ({args.method}): median {np.median(times):.3f} s, min {min(times):.3f} s "
          f"over {args.repeat} runs")
    print(f"  Agatston raw {total.agatston_raw:.1f}, volume {total.calcium_volume_mm3:.1f} mm³, "
          f"{total.n_clusters_3d} clusters, integrated mass {total.integrated_mass_mg:.1f} mg")
    tracemalloc.start()
    score_calcium(hu, vessels, {1: "aorta"}, grid, method=args.method, options=options, bone_mask=bone,
                  kvp=120.0, slice_thickness_mm=1.0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  peak memory allocated while scoring: {peak / 2**20:.0f} MiB "
          f"(input CT itself {hu.nbytes / 2**20:.0f} MiB; the 0-filled full-grid lesion map is lazily committed)")


if __name__ == "__main__":
    main()
