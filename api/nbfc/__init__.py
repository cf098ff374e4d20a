"""NBFC integration: submissions to lenders through an outbox, their webhooks, portfolio, reports."""
