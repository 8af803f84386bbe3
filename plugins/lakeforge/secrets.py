"""Generated secrets in files only their owner can read (0600), created once and then reused.

Every credential lakeforge makes (JWT secrets, service passwords, keytab passphrases) goes
through here: there is no default password anywhere, and a secret is never world-readable, not
even for the instant between creating a file and a ``chmod`` (the file is created with its mode).

    from lakeforge.secrets import generated_secret, write_secret
    password = generated_secret(home / "mlflow-admin.password")   # generated on first call
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

SECRET_MODE = 0o600
log = logging.getLogger(__name__)


class InsecureSecretFile(RuntimeError):
    """A secret file that others can read or write: refused rather than used."""


def write_secret(path: Path | str, value: str, *, overwrite: bool = False) -> Path:
    """Write ``value`` to ``path`` with mode 0600, atomically (a temporary file in the same
    folder, created 0600, then renamed). Without ``overwrite`` an existing file is an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() and not overwrite:
        raise FileExistsError(f"secret {path} exists (pass overwrite=True to rotate it)")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(value)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_secret(path: Path | str) -> str:
    """The secret in ``path``; refused if group or others may read or write it."""
    path = Path(path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise InsecureSecretFile(f"{path} has mode {mode:04o}: secrets must be 0600 (chmod 600 {path})")
    return path.read_text().strip()


def generated_secret(path: Path | str, nbytes: int = 32) -> str:
    """The secret stored in ``path``, generated (``token_urlsafe(nbytes)``) on first use.
    Two processes racing to create it agree: the file appears whole (written aside, then
    hard-linked into place, which fails if it exists) and the loser reads the winner's."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, SECRET_MODE)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(nbytes))
            os.link(tmp, path)
        except FileExistsError:
            log.debug("%s was created by another process first: using theirs", path)
        finally:
            tmp.unlink(missing_ok=True)
    return read_secret(path)


def restrict(path: Path | str) -> None:
    """Make an existing file (a database, a log with credentials) readable by its owner only."""
    os.chmod(path, SECRET_MODE)
