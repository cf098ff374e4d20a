"""A simulated NBFC (lender) for development and tests: `packfleet nbfc-sim`."""
