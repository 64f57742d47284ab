"""The FastAPI adapter: commit before the response, connections given back, lifecycle."""
