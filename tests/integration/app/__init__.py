"""The reference app's services on a started Database."""
