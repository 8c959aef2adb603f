"""Shared fixtures of the radiograph tests."""
import numpy as np
import pytest
from scipy import ndimage


@pytest.fixture
def spineless_images() -> tuple[np.ndarray, np.ndarray]:
    """Two 120 × 100 images with no spine: a flat field with 1 % noise, and smooth random blobs."""
    rng = np.random.default_rng(1)
    flat = 1.0 + rng.normal(0, 0.01, size=(120, 100))
    blobs = ndimage.gaussian_filter(rng.normal(size=(120, 100)), 5)
    return flat, blobs
