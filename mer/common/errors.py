"""Errors a user can act on: each message names the file or key and what to do."""


class MerError(Exception):
    """A problem with the user's input or setup, reported as one line, not a traceback."""

