"""kadapt/testing."""
