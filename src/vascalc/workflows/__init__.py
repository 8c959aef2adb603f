"""Whole jobs (CT scoring, …): they wire loading, masks, scoring and results together."""
