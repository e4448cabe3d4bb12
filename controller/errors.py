"""Errors shared across the controller's layers."""


class UserError(Exception):
    """An error the user can fix: printed as one line by the CLI, exit status 2, no traceback."""
