"""The reference app end to end: the real webhook, the real API, the real command."""
