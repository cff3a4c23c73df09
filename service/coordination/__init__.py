"""Coordination of work units across cluster members (cluster mode)."""
