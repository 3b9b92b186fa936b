"""Evaluation: official benchmark scoring and the evaluation runner."""
