"""The bench result document: assembling, validating, reading and writing it.

Its JSON schema is ``schema.json`` beside this module (``SCHEMA_VERSION`` says which one); the
schema's description explains how versions evolve.
"""

from __future__ import annotations

import datetime as _dt
import json
from importlib import resources
from pathlib import Path
from typing import Any

from edgeguard._files import write_file
from edgeguard.bench.fingerprint import fingerprint as _fingerprint

FORMAT = "edgeguard-bench"
SCHEMA_VERSION = "1.2"


class ResultsError(ValueError):
    """A file is not a valid bench result document."""


def schema() -> dict[str, Any]:
    """The JSON schema of the result document."""
    doc: dict[str, Any] = json.loads(resources.files("edgeguard.bench").joinpath("schema.json").read_text())
    return doc


def default_label(fp: dict[str, Any]) -> str:
    """``<arch> <native|emulated> (<cpu model>)``, the name reports use for a platform."""
    how = "emulated" if fp.get("emulated") else "native"
    model = fp.get("cpu_model")
    return f"{fp['arch']} {how}" + (f" ({model})" if model else "")


def make_document(suites: dict[str, Any], mode: str, label: str | None = None,
                  fp: dict[str, Any] | None = None) -> dict[str, Any]:
    """Wraps suite sections with the fingerprint and metadata into a result document."""
    fp = _fingerprint() if fp is None else fp
    return {
        "format": FORMAT,
        "schema_version": SCHEMA_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "mode": mode,
        "label": label or default_label(fp),
        "emulated": bool(fp["emulated"]),
        "fingerprint": fp,
        "suites": suites,
    }


def validate(doc: Any) -> None:
    """Checks a document against the schema.

    Raises ResultsError naming the first violation, and ImportError if jsonschema (the ``bench``
    or ``test`` extra) is not installed.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema(), format_checker=jsonschema.FormatChecker())
    error = jsonschema.exceptions.best_match(validator.iter_errors(doc))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "(document)"
        raise ResultsError(f"{where}: {error.message}")


def load(path: str | Path) -> dict[str, Any]:
    """Reads and validates a result file. Raises ResultsError (also for unreadable JSON) or OSError."""
    try:
        doc: dict[str, Any] = json.loads(Path(path).read_text())  # validate() checks it is an object
    except json.JSONDecodeError as e:
        raise ResultsError(f"{path}: not JSON: {e}") from e
    try:
        validate(doc)
    except ResultsError as e:
        raise ResultsError(f"{path}: {e}") from e
    return doc


def dump(doc: dict[str, Any], path: str | Path, *, overwrite: bool = True) -> None:
    """Writes a document as indented JSON, atomically (creating parent directories).

    Raises:
        FileExistsError: `path` exists and `overwrite` is False.
        OSError: the file cannot be written (a failure leaves no file).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_file(path, (json.dumps(doc, indent=2) + "\n").encode(), overwrite=overwrite)
