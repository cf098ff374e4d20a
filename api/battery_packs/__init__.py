"""Battery-pack asset management (spec: irasus-battery-pack-api.rst); a pack is a battery row."""
