"""Tissue HU of the phantom against the real non-contrast abdomen CT in ../shared/data (skipped if absent)."""

from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"
REAL_CT = SHARED / "ct" / "totalseg_example" / "example_ct.nii.gz"


def _peaks(values: np.ndarray) -> tuple[float, float]:
    h, e = np.histogram(values, bins=np.arange(-300, 401, 5))
    c = 0.5 * (e[:-1] + e[1:])
    fat, soft = c < -20, (c >= -20) & (c <= 150)
    return float(c[fat][np.argmax(h[fat])]), float(c[soft][np.argmax(h[soft])])


@pytest.mark.skipif(not REAL_CT.exists(), reason="shared sample data not available")
def test_fat_and_soft_tissue_peaks_match_a_real_scan(small_vascular):
    nib = pytest.importorskip("nibabel")
    real = np.asarray(nib.load(REAL_CT).dataobj)
    real = real[real > -500]
    sim = small_vascular.volume.hu[small_vascular.volume.hu > -500]
    (fat_r, soft_r), (fat_s, soft_s) = _peaks(real), _peaks(sim)
    assert abs(fat_r - fat_s) <= 10.0  # real ≈ −102 HU
    assert abs(soft_r - soft_s) <= 15.0  # real ≈ 22 HU (mixed organs/bowel at 3 mm)
    # the share of fat-like voxels (−150…−50 HU) in the body is comparable (real ≈ 0.3)
    share = lambda v: float(np.mean((v >= -150) & (v <= -50)))  # noqa: E731
    assert share(sim) == pytest.approx(share(real), abs=0.1)
