"""Plugins for other frameworks (imported on demand: each needs its framework installed)."""
