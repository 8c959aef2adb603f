"""The top of every ``result.json`` (CT, radiograph, …): one schema version, one reader for all."""

from __future__ import annotations

from vascalc import __version__

SCHEMA_VERSION = "1.0"


def result_header(kind: str, case_id: str) -> dict:
    """``schema_version``, ``tool`` (name and version), ``kind`` and ``case_id`` of a result."""
    return {
        "schema_version": SCHEMA_VERSION,
        "tool": {"name": "vascalc", "version": __version__},
        "kind": kind,
        "case_id": case_id,
    }
