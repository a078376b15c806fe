"""The Redis data model: every key, every script and every state an event or action passes through."""
