"""Errors a user can act on: each message names the file or key and what to do."""


class MerError(Exception):
    """A problem with the user's input or setup, reported as one line, not a traceback."""


class ClipError(MerError):
    """One clip cannot be used; the run reports it and goes on with the others."""

    def __init__(self, clip_id: str, reason: str):
        super().__init__(f"clip {clip_id}: {reason}")
        self.clip_id = clip_id
        self.reason = reason
