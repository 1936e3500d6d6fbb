"""The wire protocol: pydantic models for every request, reply and event."""
