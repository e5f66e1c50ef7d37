"""On-disk stores: the plug-in directory format, the zoo catalog, the hidden-state cache."""
