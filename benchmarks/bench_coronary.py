"""Benchmark: coronary scoring of a full-size non-gated chest CT (512×512, 1–2.5 mm slices).

Target (issue 8): ≤ 20 s per chest CT on a 2-core machine, built-in heart region and the shipped
lesion model, load excluded (the phantom is made in memory).

    python benchmarks/bench_coronary.py [--slices 128] [--increment 2.5] [--seed 900123]

Not a test: timings depend on the machine. The numbers in docs/coronary.md come from this script.
"""

from __future__ import annotations

import argparse
import time

from vascalc.phantoms import make_chest_phantom
from vascalc.workflows.coronary import score_coronary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, default=128)
    parser.add_argument("--increment", type=float, default=2.5)
    parser.add_argument("--pixel", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=900_123)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    start = time.perf_counter()
    phantom = make_chest_phantom(args.seed, shape=(args.slices, 512, 512),
                                 spacing_mm=(args.increment, args.pixel, args.pixel), supersample=2)
    print(f"phantom {args.slices}×512×512 at {args.increment:g}/{args.pixel:g} mm made in "
          f"{time.perf_counter() - start:.1f} s")
    for k in range(args.repeat):
        start = time.perf_counter()
        result = score_coronary(phantom.volume, segmenter="builtin")
        total = time.perf_counter() - start
        stages = ", ".join(f"{name} {value:.2f}" for name, value in result.timings_s.items())
        print(f"run {k + 1}: {total:.2f} s ({stages}); {len(result.lesions)} candidates, "
              f"total Agatston {result.total.agatston_3mm:.1f}")


if __name__ == "__main__":
    main()
