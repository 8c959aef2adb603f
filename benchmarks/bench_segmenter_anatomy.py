"""How the built-in segmenter carries over to anatomy it was not developed on (docs/segmentation.md,
"Anatomy probe").

The vascular phantom's vessel course is the same for every seed (seeds vary noise, plaques, fat planes
and bowel), so the segmentation bench never shows the segmenter another body. This probe warps a
phantom in-plane about the volume centre — a scale (body and vessel size) and a rotation (patient
roll) — and moves its truth labels with it, then reports the aorta and iliac Dice. A 1° rotation with
scale 1 is the control for the resampling itself (linear HU, nearest-neighbour labels).

Usage:
    python benchmarks/bench_segmenter_anatomy.py                       # seed 40, non-contrast and CTA
    python benchmarks/bench_segmenter_anatomy.py --seeds 40,41 --warps 1:0,0.85:0,1.15:0,1:10
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
from scipy import ndimage as ndi

from vascalc.anatomy.builtin.vessels import segment_vessels
from vascalc.bench.segmentation import compare
from vascalc.phantoms import make_vascular_phantom

STRUCTURES = ("aorta", "iliac_artery_left", "iliac_artery_right")
LUMEN_HU = {"noncontrast": 40.0, "contrast": 350.0}
DEFAULT_WARPS = "1:0,1:1,0.85:0,1.15:0,1:10,1:-10,0.85:10,1.15:-10"


def warp_in_plane(array: np.ndarray, scale: float, degrees: float, *, order: int) -> np.ndarray:
    """``array`` (z, y, x) scaled by ``scale`` and rotated by ``degrees`` in each axial slice about
    the slice centre (voxel units, so anisotropic pixels stretch with it); ``order`` 1 for HU, 0 for
    labels."""
    theta = np.deg2rad(degrees)
    rotation = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    matrix = np.eye(3)
    matrix[1:, 1:] = rotation.T / scale  # output voxel → input voxel
    centre = (np.array(array.shape) - 1) / 2.0
    mode = "nearest" if order else "constant"
    return ndi.affine_transform(array, matrix, centre - matrix @ centre, order=order, mode=mode, cval=0)


def probe(kind: str, seed: int, scale: float, degrees: float) -> dict:
    phantom = make_vascular_phantom(seed, shape=(120, 256, 256), spacing_mm=(2.5, 1.5, 1.5), lumen_hu=LUMEN_HU[kind])
    volume, truth = phantom.volume, phantom.totalseg_labels()
    hu = warp_in_plane(volume.hu.astype(np.float32), scale, degrees, order=1).round().astype(volume.hu.dtype)
    warped = dataclasses.replace(volume, hu=hu)
    warped_truth = dataclasses.replace(truth, labels=warp_in_plane(truth.labels, scale, degrees, order=0))
    start = time.perf_counter()
    result = segment_vessels(warped)
    seconds = time.perf_counter() - start
    rows = compare(f"{kind}-{seed}", result.labels, warped_truth, seconds, STRUCTURES)
    return {"kind": kind, "seed": seed, "scale": scale, "degrees": degrees, "seconds": seconds,
            **{row.structure: row.dice for row in rows}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="40", help="phantom seeds, comma-separated")
    parser.add_argument("--kinds", default="noncontrast,contrast")
    parser.add_argument("--warps", default=DEFAULT_WARPS, help="scale:degrees pairs, comma-separated")
    args = parser.parse_args()
    warps = [tuple(float(v) for v in w.split(":")) for w in args.warps.split(",")]
    print("| kind | seed | scale | rotation ° | aorta | iliac left | iliac right | s |")
    print("|---|---|---|---|---|---|---|---|")
    for kind in args.kinds.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            for scale, degrees in warps:
                r = probe(kind, seed, scale, degrees)
                print(f"| {kind} | {seed} | {scale:g} | {degrees:g} | {r['aorta']:.3f} | {r['iliac_artery_left']:.3f} "
                      f"| {r['iliac_artery_right']:.3f} | {r['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
