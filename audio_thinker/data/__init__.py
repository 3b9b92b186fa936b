"""Audio I/O, data sets and training rows."""
