"""Benchmark scoring: official verdicts, per-item records, official prediction files, tables and
the think-rate analysis. Pure apart from file I/O; no model, no Ray, no verl."""
