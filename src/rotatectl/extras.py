"""Optional dependencies (pip extras): which adapter needs which, and the one line an
operator gets when one is missing (exit 2, naming the command that installs it)."""

from __future__ import annotations

import importlib.util

from .errors import ConfigError

# Top-level module -> the extra that installs it.
EXTRAS = {
    "hvac": "vault",
    "boto3": "aws",
    "botocore": "aws",
    "requests": "requests",
    "httpx": "httpx",
    "psycopg": "postgres",
    "redis": "redis",
    "pymysql": "mysql",
}


class MissingExtraError(ConfigError):
    """An adapter's optional dependency is not installed (exit 2)."""


def message(module: str, what: str) -> str:
    root = module.partition(".")[0]
    extra = EXTRAS.get(root)
    install = f"pip install 'rotatectl[{extra}]'" if extra else f"pip install {root}"
    return f"{what} needs the Python package {root}, which is not installed: {install}"


def require(module: str, what: str) -> None:
    """MissingExtraError unless ``module`` can be imported (checked without importing
    it: start-up stays cheap). ``what`` names the adapter ("store type 'vault'")."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent missing, or blocked in sys.modules
        found = False
    if not found:
        raise MissingExtraError(message(module, what))


def missing(exc: ImportError, what: str) -> MissingExtraError | None:
    """``exc`` as a MissingExtraError when it is a known extra's module that is not
    installed; None for any other import failure (a bug: reported as such)."""
    name = getattr(exc, "name", None) or ""
    if name.partition(".")[0] not in EXTRAS:
        return None
    return MissingExtraError(message(name, what))
