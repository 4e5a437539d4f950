"""The one exception type users see: a message naming the file, line or field and what was expected."""


class ElectraError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits with status 2."""
