"""Benchmark of the lateral-radiograph generator and of AAC-24 inference (docs/radiograph.md).

Usage:
    python benchmarks/bench_xray.py                    # generator images/s, inference s/image (bundled model)
    python benchmarks/bench_xray.py --model DIR --n 20 # another model folder, more images

Generator: wall-clock per film of ``make_lateral_spine`` (radiograph chain at the training
resolution 0.4–0.9 mm, at 0.2-mm detector pixels, and the DXA chain), one process, best-effort on
a shared machine (mean over ``--n`` seeds). Inference: per film, the learned localiser (when the
model has one) + the fold-ensemble grader + regressor on 0.2-mm films, model already loaded, and
the model-free baseline grader with the true landmarks; torch threads as set by ``--threads``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from vascalc.phantoms.lateral_spine import make_lateral_spine


def generator(n: int) -> list[tuple[str, float, str]]:
    rows = []
    for name, kw in (("radiograph, 0.4–0.9 mm (training)", {}),
                     ("radiograph, 0.2 mm (detector)", {"pixel_spacing_mm": 0.2}),
                     ("DXA chain, 0.4–1.0 mm", {"chain": "dxa"})):
        t0 = time.perf_counter()
        shapes = [make_lateral_spine(10_000_000 + s, **kw).image.shape for s in range(n)]
        dt = (time.perf_counter() - t0) / n
        rows.append((name, dt, f"{int(np.mean([a for a, _ in shapes]))}×{int(np.mean([b for _, b in shapes]))}"))
    return rows


def inference(model: str | None, n: int) -> list[tuple[str, float]]:
    from vascalc.imaging.radiograph import radiograph_from_array
    from vascalc.learn.aac import load_aac_ensemble
    from vascalc.radiograph.baseline import grade_baseline
    from vascalc.radiograph.kauppila import spine_geometry
    from vascalc.radiograph.learned import BUNDLED_MODEL, grade_learned

    folder = model or BUNDLED_MODEL
    films = [make_lateral_spine(20_000_000 + s, pixel_spacing_mm=0.2) for s in range(n)]
    t0 = time.perf_counter()
    ensemble = load_aac_ensemble(folder)
    load_s = time.perf_counter() - t0
    rows = [("load model folder (once)", load_s)]
    if os.path.isfile(os.path.join(folder, "localiser.json")):
        from vascalc.learn.aac_localiser import load_localiser, locate_learned

        localiser = load_localiser(folder)
        t0 = time.perf_counter()
        for f in films:
            locate_learned(localiser, f.image, f.pixel_spacing_mm)
        rows.append(("learned localiser", (time.perf_counter() - t0) / n))
    t0 = time.perf_counter()
    for f in films:
        grade_learned(f.image, spine_geometry(f.vertebrae, f.pixel_spacing_mm), folder, ensemble=ensemble)
    rows.append(("learned grader + regressor (fold ensemble)", (time.perf_counter() - t0) / n))
    t0 = time.perf_counter()
    for f in films:
        facing = "left" if f.chain.facing == "left" else "right"
        grade_baseline(radiograph_from_array(f.image, f.pixel_spacing_mm, facing=facing),
                       spine_geometry(f.vertebrae, f.pixel_spacing_mm))
    rows.append(("model-free baseline grader", (time.perf_counter() - t0) / n))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10, help="films per measurement")
    parser.add_argument("--model", default=None, help="model folder (default: the bundled demo model)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, python {platform.python_version()}")
    print("\n| generator | s/film | films/s | mean size (px) |\n|---|---|---|---|")
    for name, dt, size in generator(args.n):
        print(f"| {name} | {dt:.3f} | {1 / dt:.1f} | {size} |")
    try:
        import torch

        torch.set_num_threads(args.threads)
    except ImportError:
        print("\n(PyTorch not installed: inference of the learned model not measured)")
        return
    print("\n| inference on 0.2-mm films | s/film |\n|---|---|")
    for name, dt in inference(args.model, args.n):
        print(f"| {name} | {dt:.4f} |")


if __name__ == "__main__":
    main()
