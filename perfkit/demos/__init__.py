"""Runnable walk-throughs of the seed chapter's examples, under virtual time."""
