"""Shared synthetic landmarks for the AAC learning tests."""
from __future__ import annotations

import numpy as np

from vascalc.phantoms.types import VertebraLandmark


def spine_landmarks() -> tuple[VertebraLandmark, ...]:
    """L1–L4: four 25-mm bodies 10 mm apart (levels 35 mm tall), 30 mm deep, anterior border at
    column 60 (1-mm pixels)."""
    out = []
    for i, name in enumerate(("L1", "L2", "L3", "L4")):
        top, bottom = 20.0 + 35.0 * i, 45.0 + 35.0 * i
        out.append(VertebraLandmark(name=name, corners_px=((top, 60.0), (top, 90.0), (bottom, 90.0), (bottom, 60.0)),
                                    centre_px=((top + bottom) / 2, 75.0)))
    return tuple(out)


def stripe_patches(n: int, seed: int, patch_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Noise patches with a bright stripe at the near columns covering grade/3 of the rows (0 for
    grade 0), i.e. the B.1 rule drawn directly: f = 0, ≈ 0.25, ≈ 0.5, ≈ 0.85 (for 16-px patches)."""
    rng = np.random.default_rng(seed)
    grades = np.tile(np.arange(4), n // 4 + 1)[:n]
    x = rng.normal(0.0, 0.3, size=(n, patch_px, patch_px)).astype(np.float32)
    cover = {0: 0, 1: patch_px // 4, 2: patch_px // 2, 3: (7 * patch_px) // 8}
    for i, g in enumerate(grades):
        start = rng.integers(0, patch_px - cover[g] + 1)
        x[i, start:start + cover[g], 2:6] += 2.0
    return x, grades
