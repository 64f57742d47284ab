"""The Telegram side behind a FastAPI webhook, with Telegram replaced by a recording session."""
