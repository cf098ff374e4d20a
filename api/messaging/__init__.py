"""Outgoing messages (SMS): a provider interface, the development `console` provider, the outbox."""
