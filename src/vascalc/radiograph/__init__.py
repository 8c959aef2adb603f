"""AAC-24 on lateral radiographs: Kauppila geometry and grading, a model-free L1–L4 localiser and wall
grader, and the CT-derived AAC-24 (SCORING.md B)."""

from vascalc.radiograph.kauppila import (
    KauppilaResult,
    SegmentGrade,
    SpineGeometry,
    score_intervals,
    score_masks,
    severity_class,
    spine_geometry,
)

__all__ = ["KauppilaResult", "SegmentGrade", "SpineGeometry", "score_intervals", "score_masks", "severity_class",
           "spine_geometry"]
