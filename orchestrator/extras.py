"""Which of nightowl's optional extras (`pip install 'nightowl[train]'`...) are installed, from installed metadata."""
from __future__ import annotations

import importlib.metadata


def version_of(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def missing_from_extra(extra: str, distribution: str = "nightowl") -> list[str]:
    """Requirements of `distribution[extra]` that are not installed (read from the installed metadata)."""
    try:
        requirements = importlib.metadata.requires(distribution) or []
    except importlib.metadata.PackageNotFoundError:
        return []
    missing = []
    for req in requirements:
        name, _, marker = req.partition(";")
        if f'extra == "{extra}"' in marker.replace("'", '"'):
            dist = name.split("[")[0].split("<")[0].split(">")[0].split("=")[0].split("!")[0].strip()
            if version_of(dist) is None:
                missing.append(dist)
    return missing
