"""`python -m device_sim ...`: the same command as `packfleet sim`."""

import typer

from device_sim.cli import sim

typer.run(sim)
