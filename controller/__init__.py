"""Sigap controller: aggregates queues, water levels, alerts and devices."""

__version__ = "0.1.0"
