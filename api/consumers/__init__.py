"""Consumers (spec: ienerzy-bms-api.md, "Consumer Management"): KYC data, documents, profile."""
