"""Tooling that runs on the engineer's PC (CPython), never on a board."""
