"""Stream raw text corpora: ``.txt`` / ``.txt.gz`` (blank lines separate documents) and ``.jsonl`` (one
document per line, in a ``text`` field), files or folders of them, with memory that does not grow with
corpus size.

Bad input never crashes with a traceback and is never dropped silently: depending on ``errors`` it either
raises an ``ElectraError`` naming the file and byte offset / line (``"strict"``), or carries on and counts
it in ``CorpusStats`` (``"replace"``: undecodable bytes become U+FFFD; ``"skip"``: such lines are dropped).
Binary files, empty files and files of unknown type inside folders are always skipped and counted. Lines
longer than ``max_line_bytes`` are cut into pieces (at a space where possible) and counted.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from electra.errors import ElectraError

TEXT_SUFFIXES = (".txt", ".txt.gz", ".text")
JSONL_SUFFIXES = (".jsonl", ".jsonl.gz", ".ndjson")
ERRORS = ("strict", "replace", "skip")
DOC_END = None  # marker yielded by Corpus.lines() after the last line of a document
MAX_LINE_BYTES = 1 << 20
MAX_RECORD_BYTES = 64 << 20
_NOTES_PER_REASON = 3


@dataclass
class CorpusStats:
    """What was read, and every item skipped or altered (``skipped`` / ``altered``: reason -> count)."""

    files: int = 0
    bytes: int = 0  # bytes of input consumed (compressed size for .gz)
    documents: int = 0
    lines: int = 0
    skipped: Counter = field(default_factory=Counter)
    altered: Counter = field(default_factory=Counter)
    notes: dict[str, list[str]] = field(default_factory=dict)  # reason -> first few locations

    def skip(self, reason: str, where: str, n: int = 1) -> None:
        self.skipped[reason] += n
        self._note(reason, where)

    def alter(self, reason: str, where: str, n: int = 1) -> None:
        self.altered[reason] += n
        self._note(reason, where)

    def _note(self, reason: str, where: str) -> None:
        locs = self.notes.setdefault(reason, [])
        if len(locs) < _NOTES_PER_REASON:
            locs.append(where)


def _kind(path: Path) -> str | None:
    name = path.name.lower()
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(TEXT_SUFFIXES):
        return "txt"
    return None


def find_files(inputs: Sequence[str | Path], stats: CorpusStats | None = None) -> list[Path]:
    """Expand files and folders (recursively, sorted) into input files; raise if there are none.

    A file named explicitly is read whatever its suffix (as text unless it ends in .jsonl); inside folders
    only known suffixes are taken, others are counted as skipped.
    """
    stats = stats if stats is not None else CorpusStats()
    files: list[Path] = []
    for p in map(Path, inputs):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
            for f in found:
                if _kind(f) is None:
                    stats.skip("unsupported file type in folder", str(f))
                else:
                    files.append(f)
        elif p.is_file():
            files.append(p)
        else:
            raise ElectraError(f"{p}: input not found")
    if not files:
        raise ElectraError(f"no input files in {' '.join(map(str, inputs))} "
                           f"(expected {', '.join(TEXT_SUFFIXES + JSONL_SUFFIXES)} files or folders of them)")
    return files


def _open(path: Path) -> tuple[BinaryIO, BinaryIO]:
    """(raw file, decompressed stream); gzip is recognised by its magic bytes, whatever the name."""
    raw = open(path, "rb")  # noqa: SIM115 - closed by the caller
    magic = raw.read(2)
    raw.seek(0)
    if magic == b"\x1f\x8b":
        return raw, gzip.GzipFile(fileobj=raw)  # type: ignore[return-value]
    return raw, raw


def _looks_binary(head: bytes) -> bool:
    return b"\x00" in head


class Corpus:
    """The input files as a stream of lines with document ends.

    ``lines()`` yields stripped, non-empty lines (``str``) and ``DOC_END`` (``None``) after each document's
    last line; ``stats`` counts files, documents, lines and skips as the stream is consumed.
    """

    def __init__(self, inputs: Sequence[str | Path], *, text_field: str = "text", errors: str = "strict",
                 max_line_bytes: int = MAX_LINE_BYTES, max_record_bytes: int = MAX_RECORD_BYTES):
        if errors not in ERRORS:
            raise ElectraError(f"--errors {errors}: expected one of {', '.join(ERRORS)}")
        self.stats = CorpusStats()
        self.files = find_files(inputs, self.stats)
        self.text_field = text_field
        self.errors = errors
        self.max_line_bytes = max(16, max_line_bytes)
        self.max_record_bytes = max_record_bytes
        self.total_bytes = sum(f.stat().st_size for f in self.files)
        self._raw: BinaryIO | None = None

    def position(self) -> int:
        """Input bytes consumed so far (for progress bars)."""
        raw = self._raw
        return self.stats.bytes + (raw.tell() if raw is not None and not raw.closed else 0)

    def texts(self) -> Iterator[str]:
        """Just the lines (for tokenizer training)."""
        for line in self.lines():
            if line is not None:
                yield line

    def lines(self) -> Iterator[str | None]:
        for path in self.files:
            raw, stream = _open(path)
            self._raw = raw
            with raw, stream:
                try:
                    head = stream.peek(8192)[:8192] if hasattr(stream, "peek") else b""
                except (OSError, EOFError) as e:
                    self._bad_file(path, f"unreadable compressed file ({e})")
                    continue
                if not head:
                    self.stats.skip("empty file", str(path))
                    continue
                if _looks_binary(head):
                    self.stats.skip("binary file (NUL bytes)", str(path))
                    continue
                self.stats.files += 1
                reader = self._jsonl(path, stream) if _kind(path) == "jsonl" else self._txt(path, stream)
                open_doc = False
                try:
                    for item in reader:
                        if item is DOC_END:
                            self.stats.documents += 1
                        else:
                            self.stats.lines += 1
                        open_doc = item is not DOC_END
                        yield item
                except (OSError, EOFError) as e:  # truncated or corrupt gzip
                    self._bad_file(path, f"read error ({e})")
                    if open_doc:  # end the document cut short: it must not run on into the next file
                        self.stats.documents += 1
                        yield DOC_END
                self.stats.bytes += raw.tell()
            self._raw = None

    def _bad_file(self, path: Path, why: str) -> None:
        if self.errors == "strict":
            raise ElectraError(f"{path}: {why}")
        self.stats.skip("unreadable file (rest skipped)", f"{path}: {why}")

    # ---- .txt ----------------------------------------------------------------------------------------
    def _raw_lines(self, path: Path, stream: BinaryIO) -> Iterator[tuple[int, bytes, bool]]:
        """(byte offset, piece, is_continuation) with pieces of at most ``max_line_bytes`` bytes.

        An over-long line is cut at its last space in the second half of the piece, else at a UTF-8
        character boundary; only the cut-off tail is carried over, so memory stays bounded.
        """
        cap, offset, carry, cont = self.max_line_bytes, 0, b"", False
        first = True
        while True:
            chunk = stream.readline(cap - len(carry))
            if first and chunk.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark
                chunk, offset = chunk[3:], 3
            first = False
            piece = carry + chunk
            if not piece:
                return
            start = offset - len(carry)
            offset += len(chunk)
            if piece.endswith(b"\n") or len(piece) < cap:  # a whole line (or the last, unterminated one)
                yield start, piece, cont
                carry, cont = b"", False
                continue
            cut = piece.rfind(b" ", cap // 2)
            if cut < 0:
                cut = _utf8_boundary(piece)
            yield start, piece[:cut], cont
            carry, cont = piece[cut:], True

    def _decode(self, path: Path, offset: int, data: bytes) -> str | None:
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            where = f"{path}: byte {offset + e.start}"
            if self.errors == "strict":
                raise ElectraError(f"{where}: not valid UTF-8 (use --errors replace or skip to carry on)") \
                    from None
            if self.errors == "skip":
                self.stats.skip("line with invalid UTF-8", where)
                return None
            self.stats.alter("line with invalid UTF-8 replaced", where)
            return data.decode("utf-8", errors="replace")

    def _txt(self, path: Path, stream: BinaryIO) -> Iterator[str | None]:
        in_doc, long_line = False, False
        for offset, data, cont in self._raw_lines(path, stream):
            if cont and not long_line:
                long_line = True
                self.stats.alter(f"line over {self.max_line_bytes} bytes split", f"{path}: byte {offset}")
            elif not cont:
                long_line = False
            text = self._decode(path, offset, data)
            if text is None:
                continue
            text = text.strip()
            if text:
                in_doc = True
                yield text
            elif in_doc and not cont:
                in_doc = False
                yield DOC_END
        if in_doc:
            yield DOC_END

    # ---- .jsonl --------------------------------------------------------------------------------------
    def _jsonl(self, path: Path, stream: BinaryIO) -> Iterator[str | None]:
        lineno, offset, cap = 0, 0, self.max_record_bytes
        reader = stream
        while True:
            data = reader.readline(cap + 1)
            if not data:
                return
            if lineno == 0 and data.startswith(b"\xef\xbb\xbf"):  # UTF-8 byte-order mark
                data, offset = data[3:], 3
            lineno += 1
            start, offset = offset, offset + len(data)
            if len(data) > cap and not data.endswith(b"\n"):
                while data and not data.endswith(b"\n"):  # skip the rest of the record without keeping it
                    data = reader.readline(cap)
                    offset += len(data)
                self._bad_record(path, lineno, f"record over {cap} bytes", "JSON record too long")
                continue
            text = self._decode(path, start, data)
            if text is None or not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as e:
                self._bad_record(path, lineno, f"not valid JSON ({e.msg})", "JSON line not valid JSON")
                continue
            value = record.get(self.text_field) if isinstance(record, dict) else None
            if not isinstance(value, str):
                missing = not isinstance(record, dict) or self.text_field not in record
                what = "missing" if missing else "not a string"
                self._bad_record(path, lineno, f"field {self.text_field!r} {what} (use --text-field)",
                                 f"JSON record without a string {self.text_field!r} field")
                continue
            n = 0
            for line in value.split("\n"):
                if len(line) > self.max_line_bytes:
                    self.stats.alter(f"line over {self.max_line_bytes} characters split", f"{path}:{lineno}")
                for piece in _split_long(line.strip(), self.max_line_bytes):
                    if piece:
                        n += 1
                        yield piece
            if n:
                yield DOC_END
            else:
                self.stats.skip("JSON record with empty text", f"{path}:{lineno}")

    def _bad_record(self, path: Path, lineno: int, why: str, reason: str) -> None:
        if self.errors == "strict":
            raise ElectraError(f"{path}:{lineno}: {why} (use --errors skip to carry on)")
        self.stats.skip(reason, f"{path}:{lineno}")


def _utf8_boundary(data: bytes) -> int:
    """Length of ``data`` without a trailing incomplete UTF-8 character."""
    j = len(data)
    while j > 0 and len(data) - j < 3 and (data[j - 1] & 0xC0) == 0x80:  # continuation bytes 10xxxxxx
        j -= 1
    if j > 0 and data[j - 1] >= 0xC0:  # lead byte: is its character complete?
        need = 2 if data[j - 1] < 0xE0 else 3 if data[j - 1] < 0xF0 else 4
        if len(data) - (j - 1) < need:
            return j - 1 if j > 1 else len(data)
    return len(data)


def _split_long(line: str, max_bytes: int) -> Iterator[str]:
    """Cut a decoded line into pieces of at most ~``max_bytes`` characters, at spaces where possible."""
    while len(line) > max_bytes:
        cut = line.rfind(" ", max_bytes // 2, max_bytes)
        cut = max_bytes if cut < 0 else cut
        yield line[:cut].strip()
        line = line[cut:]
    yield line.strip()
