"""Comparison and throughput harnesses (run from a source checkout: python -m benchmarks.compare)."""
