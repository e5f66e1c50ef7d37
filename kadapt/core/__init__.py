"""kadapt/core."""
