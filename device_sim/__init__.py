"""Simulated BMS devices: battery packs that speak the MQTT device contract, at fleet scale, with faults.

model.py and routes.py are the physics (numpy arrays over the whole fleet), device.py one
battery's MQTT behaviour, transport.py many paho clients on one asyncio loop, fleet.py the
ticking and the summary line, main.py `run`, cli.py `packfleet sim`.
"""
