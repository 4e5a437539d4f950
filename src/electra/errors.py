"""The one exception type users see: a message naming the file, line or field and what was expected."""

from __future__ import annotations

import os


class ElectraError(Exception):
    """A user-facing error. The CLI prints its message on one line and exits with status 2.

    The message is kept to one line whatever it quotes (a multi-line message from a library is joined)."""

    def __init__(self, message: object = "") -> None:
        super().__init__(" ".join(str(message).split()) if "\n" in str(message) or "\r" in str(message)
                         else str(message))


def os_reason(e: OSError) -> str:
    """A short reason for a failed file operation: ``"No space left on device"``, ``"File too large"``, ..."""
    return e.strerror or (os.strerror(e.errno) if e.errno else str(e)) or type(e).__name__
