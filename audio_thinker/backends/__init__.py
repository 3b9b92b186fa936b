"""Execution backends for running verl on hardware it does not support upstream."""
