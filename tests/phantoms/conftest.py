"""Shared, module-cached phantoms so that the phantom tests stay fast."""

from __future__ import annotations

import pytest

from vascalc.phantoms import make_vascular_phantom


@pytest.fixture(scope="session")
def small_vascular():
    """The small default vascular phantom (seed 0)."""
    return make_vascular_phantom(seed=0)
