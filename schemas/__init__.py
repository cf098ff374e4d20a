"""The MQTT device contract (v1) and models shared by ingest, control, the API and the simulator.

This package imports nothing internal: devices, ingest, control and the simulator all read the
contract from here, so a typo fails in one place.
"""
