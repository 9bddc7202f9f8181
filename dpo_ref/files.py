"""Where dpo_ref keeps what it builds, and the permissions of what it writes.

``cache_dir`` holds the toy models, converted GGUF files and kept samples. Folders
dpo_ref writes get the permissions the user's umask asks for.

``save_pretrained`` writes ``model.safetensors`` with mode 600 (it goes through a
private temporary file), and ``tempfile.mkdtemp`` makes 700 folders: a model saved for a
team, a web server or another user would be unreadable to them although every other file
of the folder is not.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def share(folder: str | Path) -> None:
    """Give ``folder`` and the files in it the modes a plain ``open``/``mkdir`` would
    have given."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [Path(folder), *Path(folder).rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def source_hash(package: Path | None = None) -> str:
    """A hash of every ``*.py`` of ``package`` (dpo_ref itself by default), sorted:
    names and contents. What another dpo_ref computed is told apart by it (the book
    build's cache stamp, kept samples)."""
    package = package or Path(__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def cache_dir() -> Path:
    """Where built toy models, converted GGUF files and kept samples live:
    ``$DPO_REF_CACHE`` or ``~/.cache/dpo_ref``."""
    return Path(os.environ.get("DPO_REF_CACHE", Path.home() / ".cache" / "dpo_ref"))
