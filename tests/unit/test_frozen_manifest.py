"""The frozen-image manifest names exactly the modules `sigap deploy` copies."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

from firmware.tools.deploy import MAIN_PATH, ROOT, board_sources

MANIFEST = ROOT / "firmware" / "tools" / "frozen_manifest.py"
MODULES = MANIFEST.parent / "sigap_manifest.py"


def _frozen_files() -> set[str]:
    """Run the manifest as MicroPython's loader would, collecting what it freezes
    (paths relative to the manifest file that names them)."""
    frozen: set[str] = set()
    included: list[str] = []

    def package(path: str, files: list[str] | None = None, base_path: str = ".", opt: Any = None) -> None:
        base = (MODULES.parent / base_path).resolve()
        assert files is not None, "list the files: a whole package would freeze firmware/tools too"
        for f in files:
            assert (base / path / f).is_file(), f"{path}/{f} does not exist"
            frozen.add(f"{path}/{f}")

    for manifest in (MANIFEST, MODULES):
        exec(compile(manifest.read_text(), str(manifest), "exec"), {"include": included.append, "package": package})
    assert included == ["$(PORT_DIR)/boards/manifest.py", "sigap_manifest.py"]
    return frozen


def test_frozen_manifest_freezes_exactly_the_deployed_modules() -> None:
    deployed = {
        str(PurePosixPath(*PurePosixPath(remote).parts[2:]).with_suffix(".py"))
        for _, remote in board_sources()
        if remote != MAIN_PATH
    }
    assert _frozen_files() == deployed


def test_frozen_manifest_leaves_out_pc_tools_and_main() -> None:
    frozen = _frozen_files()
    assert not any(f.startswith("firmware/tools/") for f in frozen)
    assert "firmware/main.py" not in frozen
    assert Path(ROOT / "firmware" / "main.py").is_file()
