"""Benchmarks behind ``soulfra bench``: Soulfra measured beside its peers in the same run, reported as ratios."""
