"""The frozen-image manifest names exactly the modules `sigap deploy` copies."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import pytest

from firmware.tools.deploy import MAIN_PATH, ROOT, board_sources, checkout_build_id

MANIFEST = ROOT / "firmware" / "tools" / "frozen_manifest.py"
MODULES = MANIFEST.parent / "sigap_manifest.py"


def _frozen_files(modules: list[tuple[str, str]] | None = None) -> set[str]:
    """Run the manifests as MicroPython's loader would (each with its own folder as
    the working directory), collecting the package files they freeze (paths
    relative to the manifest file that names them) and, into `modules`, the
    single modules (path, base_path)."""
    frozen: set[str] = set()
    included: list[str] = []

    def package(path: str, files: list[str] | None = None, base_path: str = ".", opt: Any = None) -> None:
        base = (MODULES.parent / base_path).resolve()
        assert files is not None, "list the files: a whole package would freeze firmware/tools too"
        for f in files:
            assert (base / path / f).is_file(), f"{path}/{f} does not exist"
            frozen.add(f"{path}/{f}")

    def module(path: str, base_path: str = ".", opt: Any = None) -> None:
        assert (MODULES.parent / base_path / path).is_file(), f"{base_path}/{path} does not exist"
        if modules is not None:
            modules.append((path, base_path))

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(MODULES.parent)
        for manifest in (MANIFEST, MODULES):
            code = compile(manifest.read_text(), str(manifest), "exec")
            exec(code, {"include": included.append, "package": package, "module": module})
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


def test_the_image_carries_the_build_id_deploy_computes_for_the_same_sources() -> None:
    modules: list[tuple[str, str]] = []
    _frozen_files(modules)
    assert modules == [("sigap_build.py", "../../build/frozen")]
    written = (MODULES.parent / "../../build/frozen/sigap_build.py").read_text()
    ident = checkout_build_id()
    assert f"ID = {ident!r}" in written and len(ident) == 16


def test_the_build_id_changes_with_any_source_and_not_with_their_order(tmp_path: Path) -> None:
    from firmware.tools.build_id import of_sources

    (tmp_path / "a.py").write_text("x = 1\n")
    (tmp_path / "b.py").write_text("y = 2\n")
    first = of_sources(tmp_path, ["a.py", "b.py"])
    assert of_sources(tmp_path, ["b.py", "a.py"]) == first
    (tmp_path / "b.py").write_text("y = 3\n")
    assert of_sources(tmp_path, ["a.py", "b.py"]) != first
    assert of_sources(tmp_path, ["a.py"]) != of_sources(tmp_path, ["a.py", "b.py"])
