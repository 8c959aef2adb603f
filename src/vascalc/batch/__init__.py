"""Cohorts: many cases, one subfolder each, one cohort table; a failing case never stops the run."""

from vascalc.batch.cohort import CaseOutcome, ScoredCase, run_cohort, score_cases, unique_case_ids, vessels_for_inputs

__all__ = ["CaseOutcome", "ScoredCase", "run_cohort", "score_cases", "unique_case_ids", "vessels_for_inputs"]
