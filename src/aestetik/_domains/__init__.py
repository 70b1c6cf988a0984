"""Domains (METHOD §1, §7), on arrays: clustering back-ends, spatial refinement, stability and consensus voting."""
