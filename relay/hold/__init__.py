"""Holding an event before its actions are queued: cooldown, batch and delay windows."""
