"""Builders of tiny models (from configs, no download) for tests, examples and benchmarks."""
