"""Anatomy: canonical structure names (TotalSegmentator's), landmark regions and segmenters."""
