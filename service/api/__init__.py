"""The REST API, event feed and dashboard (FastAPI)."""
