"""The state folder: one SQLite file (runs and batches, baselines, request counters) and the segment locks."""
