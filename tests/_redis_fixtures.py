"""Fixtures that start a real redis-server (filled in with the Redis backend)."""
