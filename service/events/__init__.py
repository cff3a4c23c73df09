"""Defect events: records, the in-memory store, the live feed and webhooks."""
