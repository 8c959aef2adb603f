"""Benchmark of phantom generation, and the tissue-HU comparison with a real CT (docs/phantoms.md).

Usage:
    python benchmarks/bench_phantom.py                 # timings (small, full 512×512×300, chest, inserts, xray)
    python benchmarks/bench_phantom.py --histogram     # also writes docs/img/phantom_hu_histogram.png

Timings are wall-clock seconds of the generator call only (no file writing), best of ``--repeat``.
The histogram compares body voxels (HU > −500) of the small default vascular phantom with the real
non-contrast abdomen CT in ../shared/data/ct/totalseg_example/example_ct.nii.gz (not copied).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from vascalc.phantoms import (make_chest_phantom, make_insert_phantom, make_vascular_phantom,
                              project_lateral_radiograph)

ROOT = Path(__file__).resolve().parents[1]
REAL_CT = ROOT / ".." / "shared" / "data" / "ct" / "totalseg_example" / "example_ct.nii.gz"


def best_of(fn, repeat: int) -> tuple[float, object]:
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def timings(repeat: int) -> list[tuple[str, str, float]]:
    cases = [
        ("vascular small (default)", "100×128×128", lambda: make_vascular_phantom(0)),
        ("vascular full", "300×512×512 @ 2.5×0.8×0.8 mm",
         lambda: make_vascular_phantom(0, shape=(300, 512, 512), spacing_mm=(2.5, 0.8, 0.8))),
        ("vascular full, CTA + screw, 1 mm slices at 2.5 mm",
         "300×512×512", lambda: make_vascular_phantom(0, shape=(300, 512, 512), spacing_mm=(2.5, 0.8, 0.8),
                                                       lumen_hu=350.0, metal="screw", slice_thickness_mm=1.0)),
        ("chest (default)", "64×256×256", lambda: make_chest_phantom(0)),
        ("inserts (default)", "16×400×400", lambda: make_insert_phantom(0)),
    ]
    rows = []
    for name, shape, fn in cases:
        seconds, _ = best_of(fn, repeat)
        rows.append((name, shape, seconds))
        print(f"{name:55s} {shape:32s} {seconds:6.2f} s", flush=True)
    def xray():
        ph = make_vascular_phantom(0, shape=(260, 280, 232), spacing_mm=(1.0, 1.0, 1.5), noise_sd_hu=10.0)
        return project_lateral_radiograph(ph, pixel_spacing_mm=0.5)
    seconds, _ = best_of(xray, repeat)
    rows.append(("lateral radiograph (phantom + DRR)", "260×280×232 → 519×559 px", seconds))
    print(f"{rows[-1][0]:55s} {rows[-1][1]:32s} {seconds:6.2f} s")
    return rows


def peaks(values: np.ndarray) -> tuple[float, float]:
    """HU of the fat peak (< −20 HU) and the soft-tissue peak (−20 … 150 HU), 5-HU bins."""
    h, e = np.histogram(values, bins=np.arange(-300, 401, 5))
    c = 0.5 * (e[:-1] + e[1:])
    fat = c < -20
    soft = (c >= -20) & (c <= 150)
    return float(c[fat][np.argmax(h[fat])]), float(c[soft][np.argmax(h[soft])])


def histogram(out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib

    if not REAL_CT.exists():
        print(f"real CT not found at {REAL_CT}; skipping the histogram")
        return
    real = np.asarray(nib.load(REAL_CT).dataobj).astype(np.float32)
    real = real[real > -500]
    ph = make_vascular_phantom(0)  # 3 × 3.2 × 3.2 mm, close to the real scan's 3 mm voxels
    sim = ph.volume.hu[ph.volume.hu > -500].astype(np.float32)
    bins = np.arange(-300, 1201, 10)
    fig, ax = plt.subplots(figsize=(6.4, 3.4), dpi=90)
    ax.hist(real, bins=bins, density=True, histtype="step", lw=1.5, label="real CT (TotalSegmentator example)")
    ax.hist(sim, bins=bins, density=True, histtype="step", lw=1.5, label="vascalc phantom (seed 0, small)")
    ax.set_yscale("log")
    ax.set_xlabel("HU (body voxels, > −500 HU)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    print(f"wrote {out_png}")
    print("| quantity | real CT | phantom |\n|---|---|---|")
    for label, fn in (("fat peak (HU)", lambda v: peaks(v)[0]), ("soft-tissue peak (HU)", lambda v: peaks(v)[1]),
                      ("median (HU)", np.median), ("5th percentile", lambda v: np.percentile(v, 5)),
                      ("95th percentile", lambda v: np.percentile(v, 95)),
                      ("99th percentile", lambda v: np.percentile(v, 99)),
                      ("fraction ≥ 200 HU (bone)", lambda v: float(np.mean(v >= 200)))):
        print(f"| {label} | {fn(real):.3g} | {fn(sim):.3g} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--histogram", action="store_true")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    timings(args.repeat)
    if args.histogram:
        histogram(ROOT / "docs" / "img" / "phantom_hu_histogram.png")


if __name__ == "__main__":
    main()
