"""The top of every ``result.json`` (CT, radiograph, …): one schema version, one reader for all."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vascalc import __version__

if TYPE_CHECKING:
    from vascalc.imaging.volume import Volume

SCHEMA_VERSION = "1.0"


def result_header(kind: str, case_id: str) -> dict:
    """``schema_version``, ``tool`` (name and version), ``kind`` and ``case_id`` of a result."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "vascalc", "version": __version__},
        "kind": kind,
        "case_id": case_id,
    }


def scan_input(volume: "Volume") -> dict:
    """The ``input`` block of a CT result: scan facts (no identifiers), geometry and loading notes."""
    grid = volume.grid
    info = volume.info.to_dict()
    notes = info.pop("load_notes", ())
    return {
        "scan": info,
        "geometry": {
            "shape_zyx": list(grid.shape),
            "spacing_mm_zyx": [float(s) for s in grid.spacing_mm],
            "origin_lps_mm": [float(o) for o in grid.origin_lps_mm],
            "axis_codes_xyz": grid.axis_codes(),
        },
        "notes": list(notes),
    }
