"""The REST API (FastAPI): one folder per business domain, each with router, service and queries."""
