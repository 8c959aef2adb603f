"""Digital phantoms with exact ground truth: CT (vascular, chest/coronary, calcium inserts) and a
lateral radiograph by projection. See docs/phantoms.md.

>>> from vascalc.phantoms import make_vascular_phantom
>>> ph = make_vascular_phantom(seed=1)            # small, fast default (100 × 128 × 128)
>>> ph.truth_for("aorta").calcium_volume_mm3       # doctest: +SKIP
"""

from vascalc.phantoms.chest import make_chest_phantom
from vascalc.phantoms.core import CtPhysics
from vascalc.phantoms.inserts import make_insert_phantom
from vascalc.phantoms.io import write_phantom, write_radiograph
from vascalc.phantoms.physics import HU_PER_MG_HA_CM3, ha_density_to_hu
from vascalc.phantoms.radiograph import kauppila_grade, kauppila_truth, project_lateral_radiograph
from vascalc.phantoms.types import (PlaqueSpec, Phantom, RadiographPhantom, StructureTruth, VertebraLandmark)
from vascalc.phantoms.vascular import make_vascular_phantom

__all__ = [
    "CtPhysics", "HU_PER_MG_HA_CM3", "Phantom", "PlaqueSpec", "RadiographPhantom", "StructureTruth",
    "VertebraLandmark", "ha_density_to_hu", "kauppila_grade", "kauppila_truth", "make_chest_phantom",
    "make_insert_phantom", "make_vascular_phantom", "project_lateral_radiograph", "write_phantom",
    "write_radiograph",
]
