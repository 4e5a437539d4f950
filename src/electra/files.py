"""Writing files so that a crash, a full disk or a kill never leaves half of one: the old version or the new.

Everything here sits below the model and training code: checkpoints, run folders, exports and reports all write
through these helpers.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from safetensors import SafetensorError

from electra.errors import ElectraError, os_reason


@contextlib.contextmanager
def atomic_directory(path: str | Path, what: str = "folder", intact: str | None = None) -> Iterator[Path]:
    """Yield a temporary directory next to ``path``; on success it replaces ``path`` in one rename.

    A failed write (a full disk, a file-size limit, a read-only folder: any ``OSError``) leaves ``path`` as it
    was, removes the temporary directory and raises one ``ElectraError`` saying so (``intact`` names what is
    kept, by default ``path``'s previous contents)."""
    path = Path(path)
    tmp: Path | None = None
    recover_swap(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.tmp-", dir=path.parent))
        yield tmp
        for f in tmp.rglob("*"):  # make the bytes durable before the rename makes them visible
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except (OSError, SafetensorError) as e:  # safetensors reports its I/O errors as SafetensorError
        kept = intact or (f"the previous {path.name} is unchanged" if path.exists() else "nothing was written")
        raise ElectraError(f"{path}: could not write the {what} ({write_reason(e)}); {kept}") from None
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def recover_swap(path: str | Path) -> bool:
    """Undo a replacement that was killed between its two renames: ``path`` is missing but its previous
    version (``.NAME.old-PID``, complete) is still there. Returns whether it restored one."""
    path = Path(path)
    if path.exists() or not path.parent.is_dir():
        return False
    olds = sorted(path.parent.glob(f".{glob.escape(path.name)}.old-*"), key=lambda p: p.stat().st_mtime)
    if not olds:
        return False
    os.replace(olds[-1], path)
    return True


def write_reason(e: Exception) -> str:
    """Why a write failed, briefly: "File too large", "No space left on device", ..."""
    if isinstance(e, OSError):
        return os_reason(e)
    return re.sub(r"\s*\(os error \d+\)$", "", str(e).rsplit("I/O error: ", 1)[-1])


def write_text_atomic(path: str | Path, text: str, what: str = "file") -> None:
    """Write a small text file through a temporary sibling and a rename: the old file or the new, never half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        kept = f"the previous {path.name} is unchanged" if path.exists() else "nothing was written"
        raise ElectraError(f"{path}: could not write the {what} ({os_reason(e)}); {kept}") from None
