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
from vascalc.imaging import ScanInfo, Volume, load_volume
from vascalc.imaging.dicom_writer import write_dicom_series

from bench_scoring import build  # same folder: the realistic aorta of the scoring benchmark


def synthetic_abdomen(n_slices: int, seed: int = 0) -> tuple[Volume, np.ndarray, np.ndarray]:
    """The scoring benchmark's 512×512×n abdomen (aorta, vertebra, plaques) as a :class:`Volume`."""
    hu, vessels, bone, grid = build(seed=seed, shape=(n_slices, 512, 512))
    info = ScanInfo(source_format="synthetic", kvp=120.0, slice_thickness_mm=grid.spacing_mm[0],
                    slice_increment_mm=grid.spacing_mm[0])
    return Volume(hu=hu, grid=grid, info=info), vessels, bone


def measure(func):
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

    volume, aorta, bone = synthetic_abdomen(args.slices)
    int16_mb = volume.hu.nbytes / 1e6
    work = args.keep or Path(tempfile.mkdtemp(prefix="vascalc-bench-"))
    try:
        series = work / "dicom"
        write_dicom_series(volume, series)
        loaded, load_s, load_peak = measure(lambda: load_volume(series))
        assert loaded.hu.shape == volume.hu.shape
        assert np.array_equal(loaded.hu, volume.hu)
        policy = parse_method("agatston")
        score_calcium(loaded.hu, aorta, {1: "aorta"}, loaded.grid, method=policy)  # warm-up (imports, caches)
        result, score_s, score_peak = measure(lambda: score_calcium(
            loaded.hu, aorta, {1: "aorta"}, loaded.grid, method=policy, options=ScoringOptions(),
            bone_mask=bone, kvp=120.0, slice_thickness_mm=loaded.info.slice_thickness_mm))
        total = result.total
        print(f"volume: {volume.hu.shape} {volume.hu.dtype} = {int16_mb:.0f} MB; aorta mask {int((aorta > 0).sum())} voxels")
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
