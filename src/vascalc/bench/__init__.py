"""Benchmarks against phantom truth: calcium accuracy (:mod:`vascalc.bench.accuracy`) and
segmentation quality (:mod:`vascalc.bench.segmentation`)."""

from vascalc.bench.accuracy import (AccuracyReport, CohortCase, DetectionRow, SummaryRow, VesselRow,
                                    build_cohort, run_accuracy)

__all__ = ["AccuracyReport", "CohortCase", "DetectionRow", "SummaryRow", "VesselRow", "build_cohort",
           "run_accuracy"]
