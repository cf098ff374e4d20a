"""Remote enable/disable: commands issued, published, acknowledged, retried, expired; never lost."""
