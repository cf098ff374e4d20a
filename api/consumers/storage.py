"""Document files: content sniffing and storage under the documents folder by SHA-256.

A file is kept once per content (`<dir>/ab/abcdef...`), written to a temporary name and renamed, so
a crash never leaves a half-written document behind a valid name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

# What the first bytes say the file is; the declared Content-Type is not trusted.
_SIGNATURES = (
    (b"%PDF-", "application/pdf"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)
ALLOWED_TYPES = tuple(t for _, t in _SIGNATURES)
EXTENSIONS = {"application/pdf": "pdf", "image/jpeg": "jpg", "image/png": "png"}


def sniff(data: bytes) -> str | None:
    """The content type the bytes really have, among the allowed ones; None otherwise."""
    for magic, content_type in _SIGNATURES:
        if data.startswith(magic):
            return content_type
    return None


def store(root: Path, data: bytes) -> str:
    """Keep the bytes under their SHA-256; return the hex digest."""
    digest = hashlib.sha256(data).hexdigest()
    target = path_for(root, digest)
    if target.exists():
        return digest
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return digest


def path_for(root: Path, digest: str) -> Path:
    return root / digest[:2] / digest
