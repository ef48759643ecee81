"""Plain text: tidying line ends and blank lines, and joining ``format=flowed`` soft breaks."""
from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_BLANK_LINES = re.compile(r"\n{3,}")


def _tidy_text(text: str) -> str:
    """Normalise line ends, drop control characters and trailing spaces,
    allow at most one empty line in a row and strip the ends."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    lines = [line.rstrip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = _BLANK_LINES.sub("\n\n", text)
    return text.strip("\n").rstrip()


def _unflow(text: str, delsp: bool) -> str:
    """Join the soft line breaks of a ``format=flowed`` body (RFC 3676)."""
    out: list[str] = []
    buffer: list[str] | None = None
    buffer_depth = 0

    def emit(depth: int, pieces: list[str]) -> None:
        out.append(">" * depth + (" " if depth else "") + "".join(pieces))

    for line in text.replace("\r\n", "\n").split("\n"):
        depth = len(line) - len(line.lstrip(">"))
        content = line[depth:]
        if content.startswith(" "):
            content = content[1:]  # space-stuffing
        flowed = content.endswith(" ") and content != "-- "
        if flowed and delsp:
            content = content[:-1]
        if buffer is not None and depth == buffer_depth:
            buffer.append(content)
        else:
            if buffer is not None:
                emit(buffer_depth, buffer)
            buffer, buffer_depth = [content], depth
        if not flowed:
            emit(depth, buffer)
            buffer = None
    if buffer is not None:
        emit(buffer_depth, buffer)
    return "\n".join(out)
