"""Benchmark: load a 512×512×400 DICOM series and score it with a realistic aorta mask.

Targets (issue: CT calcium scoring end to end): scoring stage ≤ 1 s given volume and mask; DICOM
series load ≥ 100 slices/s; peak memory of each stage ≤ 3× the int16 volume.

    python benchmarks/bench_ct_pipeline.py [--slices 400] [--keep DIR]

Not a test: timings depend on the machine. The numbers in the issue notes come from this script.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from vascalc.calcium import ScoringOptions, parse_method, score_calcium
from vascalc.imaging import Grid, ScanInfo, Volume, load_volume
from vascalc.imaging.dicom_writer import write_dicom_series


def synthetic_abdomen(n_slices: int, seed: int = 0) -> tuple[Volume, np.ndarray]:
    """A 512×512×n non-contrast abdomen: body, spine, and a winding 24 mm aorta with wall plaques."""
    rng = np.random.default_rng(seed)
    spacing = (1.0, 0.78125, 0.78125)
    z, y, x = np.ogrid[:n_slices, :512, :512]
    hu = np.full((n_slices, 512, 512), -1000, dtype=np.int16)
    body = ((y - 256) / 190.0) ** 2 + ((x - 256) / 230.0) ** 2 <= 1.0
    hu[np.broadcast_to(body, hu.shape)] = 40
    spine = ((y - 330) / 28.0) ** 2 + ((x - 256) / 30.0) ** 2 <= 1.0
    hu[np.broadcast_to(spine, hu.shape)] = 600
    centre_x = 256 + 12 * np.sin(np.arange(n_slices) / 60.0)
    centre_y = np.full(n_slices, 270.0)
    radius_px = 12.0 / spacing[1]
    aorta = ((y - centre_y[:, None, None]) ** 2 + (x - centre_x[:, None, None]) ** 2) <= radius_px ** 2
    hu[aorta] = 45
    for _ in range(25):  # crescent plaques on the wall
        k = int(rng.integers(5, n_slices - 10))
        angle = rng.uniform(0, 2 * np.pi)
        py = centre_y[k] + (radius_px - 1) * np.sin(angle)
        px = centre_x[k] + (radius_px - 1) * np.cos(angle)
        length = int(rng.integers(2, 8))
        zz, yy, xx = np.ogrid[k:k + length, :512, :512]
        blob = ((yy - py) ** 2 + (xx - px) ** 2) <= rng.uniform(1.5, 4.0) ** 2
        hu[k:k + length][blob] = int(rng.integers(250, 900))
    hu += rng.normal(0, 12, hu.shape).astype(np.int16)
    grid = Grid(shape=hu.shape, spacing_mm=spacing, origin_lps_mm=(-200.0, -200.0, -400.0))
    volume = Volume(hu=hu, grid=grid, info=ScanInfo(source_format="synthetic", kvp=120.0,
                                                    slice_thickness_mm=1.0, slice_increment_mm=1.0))
    return volume, aorta.astype(np.uint8)


def measure(label: str, func):
    tracemalloc.start()
    start = time.perf_counter()
    value = func()
    seconds = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return value, seconds, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=400)
    parser.add_argument("--keep", type=Path, default=None, help="write the DICOM series here and keep it")
    args = parser.parse_args()

    volume, aorta = synthetic_abdomen(args.slices)
    int16_mb = volume.hu.nbytes / 1e6
    work = args.keep or Path(tempfile.mkdtemp(prefix="vascalc-bench-"))
    try:
        series = work / "dicom"
        write_dicom_series(volume, series)
        loaded, load_s, load_peak = measure("load", lambda: load_volume(series))
        assert loaded.hu.shape == volume.hu.shape
        mask = aorta if np.array_equal(loaded.hu, volume.hu) else aorta  # same grid as written
        policy = parse_method("agatston")
        score_calcium(loaded.hu, mask, {1: "aorta"}, loaded.grid, method=policy)  # warm-up (imports, caches)
        result, score_s, score_peak = measure("score", lambda: score_calcium(
            loaded.hu, mask, {1: "aorta"}, loaded.grid, method=policy, options=ScoringOptions(),
            kvp=120.0, slice_thickness_mm=1.0))
        total = result.total
        print(f"volume: {volume.hu.shape} int16 = {int16_mb:.0f} MB; aorta mask {int(aorta.sum())} voxels")
        print(f"DICOM load : {load_s:6.2f} s = {args.slices / load_s:6.0f} slices/s; "
              f"peak traced memory {load_peak / 1e6:6.0f} MB = {load_peak / volume.hu.nbytes:.2f}× int16 volume")
        print(f"scoring    : {score_s:6.2f} s; peak traced memory {score_peak / 1e6:6.0f} MB = "
              f"{score_peak / volume.hu.nbytes:.2f}× int16 volume")
        print(f"result     : Agatston {total.agatston_raw:.1f}, volume {total.calcium_volume_mm3:.1f} mm³, "
              f"{total.n_clusters_3d} clusters")
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
