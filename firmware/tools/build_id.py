"""The build id of a frozen image: which firmware sources it was built from.

A board running a frozen image (frozen_manifest.py) cannot show its modules'
sources, so the image carries their digest as the module `sigap_build`
(`ID`), which sigap_manifest.py writes while MicroPython's build reads the
manifest. `sigap deploy` asks the board for it and compares it with the
digest of the checkout it deploys from (`of_sources`).

Standard library only, and no imports from the rest of Sigap: MicroPython's
manifest loader imports this module from the ESP-IDF's own Python.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable

MODULE = "sigap_build"
"""The module name the image carries the id under."""


def of_sources(root: str | os.PathLike[str], relpaths: Iterable[str]) -> str:
    """Digest of the files `relpaths` (POSIX paths relative to `root`): 16 hex digits.

    The order of `relpaths` does not matter; a renamed, added, removed or
    changed file changes the id.
    """
    h = hashlib.sha256()
    for rel in sorted(set(relpaths)):
        with open(os.path.join(root, *rel.split("/")), "rb") as f:
            data = f.read()
        h.update(rel.encode() + b"\0" + str(len(data)).encode() + b"\0" + data)
    return h.hexdigest()[:16]


def write_module(directory: str | os.PathLike[str], ident: str) -> str:
    """Write `sigap_build.py` (ID = ident) into `directory` (made if need be); its path.

    Left alone when it already holds this id, so a rebuild of an unchanged
    tree does not freeze it again."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, MODULE + ".py")
    text = f"# Written by firmware/tools/sigap_manifest.py: the sources this image froze.\nID = {ident!r}\n"
    try:
        with open(path) as f:
            if f.read() == text:
                return path
    except OSError:
        pass
    with open(path, "w") as f:
        f.write(text)
    return path
