"""Built-in, model-free segmenters (numpy / scipy / scikit-image; CPU; no weights).

``landmarks``: body, skeleton with labelled vertebrae, pelvis, femurs, heart region.
``vessels``: the arteries. Names are imported lazily so that one module can be used without the other.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "segment_body": "landmarks", "segment_bones": "landmarks", "segment_heart_region": "landmarks",
    "LandmarkResult": "landmarks", "VertebraLevel": "landmarks",
    "segment_vessels": "vessels",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
