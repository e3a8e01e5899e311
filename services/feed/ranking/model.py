"""The learned engagement model on disk: versioned files and a `current` pointer.

`socialmesh train-ranker` writes `<dir>/ranker-<UTC timestamp>.joblib` (the
fitted scikit-learn estimator with its feature names and training metadata),
then replaces `<dir>/current` (the file name) atomically. The feed service
loads the current model at start and again when the pointer changes (checked
at most every few seconds, when a RANKED session is scored). A missing,
unreadable or incompatible model (other feature names) means no model: the
ensemble spreads the model's weight over its other components.

Model files are pickles: load them only from a directory you control.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from .features import FEATURE_NAMES

log = logging.getLogger("socialmesh.feed")

POINTER = "current"
#: How often a serving process looks at the pointer (seconds).
RELOAD_CHECK_SECONDS = 5.0


@dataclass
class RankerModel:
    """A loaded model: P(engage | features) for a batch of candidates."""

    version: str
    estimator: Any
    feature_names: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)

    def predict(self, rows: Sequence[Sequence[float]]) -> list[float]:
        """One batched call for a whole candidate set."""
        if not rows:
            return []
        x = np.asarray(rows, dtype=np.float64)
        return [float(p) for p in self.estimator.predict_proba(x)[:, 1]]


def save(directory: Path, estimator: Any, metadata: dict[str, Any]) -> Path:
    """Writes a new versioned model file and points `current` at it; returns the file."""
    directory.mkdir(parents=True, exist_ok=True)
    version = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = directory / f"ranker-{version}.joblib"
    n = 1
    while path.exists():  # two trainings within a second
        n += 1
        path = directory / f"ranker-{version}-{n}.joblib"
    version = path.stem.removeprefix("ranker-")
    joblib.dump(
        {
            "version": version,
            "estimator": estimator,
            "feature_names": list(FEATURE_NAMES),
            "metadata": metadata,
        },
        path,
    )
    tmp = directory / f".{POINTER}.{os.getpid()}"
    tmp.write_text(path.name + "\n")
    os.replace(tmp, directory / POINTER)
    return path


def load_current(directory: Path) -> RankerModel | None:
    """The model `current` points at, or None (no pointer, unreadable, incompatible)."""
    pointer = directory / POINTER
    try:
        name = pointer.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError:
        log.warning("cannot read the ranker pointer %s", pointer, exc_info=True)
        return None
    path = directory / name
    if not name or path.parent != directory:
        log.warning("ranker pointer %s names %r: ignored", pointer, name)
        return None
    try:
        blob = joblib.load(path)
    except Exception:
        log.warning("cannot load the ranker model %s; ranking without it", path, exc_info=True)
        return None
    names = tuple(blob.get("feature_names", ()))
    if names != FEATURE_NAMES:
        log.warning("ranker model %s has features %s, not %s: ignored", path, names, FEATURE_NAMES)
        return None
    return RankerModel(
        version=str(blob["version"]),
        estimator=blob["estimator"],
        feature_names=names,
        metadata=dict(blob.get("metadata", {})),
    )


class ModelSlot:
    """The serving process's current model, reloaded when the pointer changes."""

    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self.model: RankerModel | None = None
        self._stamp: tuple[int, int] | None = None
        self._checked = 0.0

    def _pointer_stamp(self) -> tuple[int, int] | None:
        if self.directory is None:
            return None
        try:
            st = (self.directory / POINTER).stat()
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_ino)

    def load(self) -> RankerModel | None:
        """(Re)loads now."""
        self._checked = time.monotonic()
        self._stamp = self._pointer_stamp()
        self.model = load_current(self.directory) if self.directory is not None else None
        if self.model is not None:
            log.info("ranker model %s loaded from %s", self.model.version, self.directory)
        return self.model

    def current(self) -> RankerModel | None:
        """The model, reloaded first if the pointer changed (checked every few seconds)."""
        if time.monotonic() - self._checked >= RELOAD_CHECK_SECONDS:
            self._checked = time.monotonic()
            if self._pointer_stamp() != self._stamp:
                self.load()
        return self.model
