"""`python -m packfleet` is the `packfleet` command."""

from packfleet.cli import app

app(prog_name="packfleet")
