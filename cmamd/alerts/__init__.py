"""Alerts: events an operator must hear about at once, sent to Telegram, a webhook or a
program, off the copy path."""
