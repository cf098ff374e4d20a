"""SQL migrations; see packfleet.migrate for the naming rules."""
