"""kadapt/store."""
