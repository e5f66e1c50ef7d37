"""Runs: the recipe schema, the one training loop, and the infuse / joint / finetune / predict drivers."""
