"""The JupyterLab extension as `pip install` delivers it: prebuilt (no Node.js), listed enabled and OK,
the server extension enabled, and the committed build made from the committed sources."""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

from lab_helpers import REPO, require_lab

EXTENSION = REPO / "extension"
BUILT = REPO / "exosphere_nb" / "labextension"
STAMP_SOURCES = ("package.json", "tsconfig.json", "yarn.lock", "src", "style")  # as extension/scripts/stamp.js
ANSI = re.compile(r"\x1b\[[0-9;]*m")
REBUILD = "rebuild it: cd extension && jlpm install && jlpm build:prod (see extension/README.md)"
REINSTALL = 'reinstall the package: .venv/bin/pip install -e ".[test,lab]"'


def jupyter(*args: str) -> str:
    require_lab()
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", *args], capture_output=True, text=True, timeout=120, check=False
    )
    return ANSI.sub("", done.stdout + done.stderr)


def sources_sha256() -> tuple[str, int]:
    def files(rel: str) -> list[str]:
        full = EXTENSION / rel
        if full.is_dir():
            return [f for name in sorted(p.name for p in full.iterdir()) for f in files(f"{rel}/{name}")]
        return [rel]

    digest = hashlib.sha256()
    listed = sorted(f for rel in STAMP_SOURCES for f in files(rel))
    for rel in listed:
        digest.update(rel.encode() + b"\0" + (EXTENSION / rel).read_bytes() + b"\0")
    return digest.hexdigest(), len(listed)


def test_labextension_is_listed_enabled_and_ok() -> None:
    listing = jupyter("labextension", "list")
    version = json.loads((EXTENSION / "package.json").read_text())["version"]
    assert re.search(rf"^\s*exosphere-nb v{re.escape(version)} enabled OK", listing, re.M), (
        f"`jupyter labextension list` does not show exosphere-nb v{version} enabled OK; {REINSTALL}\n{listing}"
    )


def test_server_extension_is_enabled_by_the_installed_config() -> None:
    listing = jupyter("server", "extension", "list")
    assert re.search(r"exosphere_nb\.labserver\s+enabled", listing), f"{REINSTALL}\n{listing}"
    assert re.search(r"exosphere_nb\.labserver\s+OK", listing), listing


def test_the_committed_build_is_made_from_the_committed_sources() -> None:
    stamp = json.loads((BUILT / "build-stamp.json").read_text())
    digest, count = sources_sha256()
    assert (stamp["sources_sha256"], stamp["files"]) == (digest, count), (
        f"exosphere_nb/labextension/ was not built from the sources in extension/: {REBUILD}"
    )
    built = json.loads((BUILT / "package.json").read_text())
    assert built["name"] == "exosphere-nb"
    assert (BUILT / built["jupyterlab"]["_build"]["load"]).is_file()


def test_the_installed_labextension_is_this_build() -> None:
    require_lab()
    from jupyter_core.paths import jupyter_path

    found = [Path(p) / "exosphere-nb" for p in jupyter_path("labextensions") if (Path(p) / "exosphere-nb").is_dir()]
    assert found, f"no exosphere-nb labextension is installed; {REINSTALL}"
    installed = json.loads((found[0] / "build-stamp.json").read_text())
    committed = json.loads((BUILT / "build-stamp.json").read_text())
    assert installed == committed, f"{found[0]} is an older build than exosphere_nb/labextension/; {REINSTALL}"


def test_the_build_is_pinned_for_immutable_installs() -> None:
    package = json.loads((EXTENSION / "package.json").read_text())
    assert "@jupyter/builder" in package["devDependencies"]
    assert package["scripts"]["build:labextension"] == "jupyter-builder build ."
    assert package["jupyterlab"]["outputDir"] == "../exosphere_nb/labextension"
    lock = (EXTENSION / "yarn.lock").read_text()
    assert "__metadata:" in lock and '"@jupyter/builder@npm:' in lock
    # `CI=true` makes yarn refuse to change the lock file: nothing may switch that off
    assert "enableImmutableInstalls: false" not in (EXTENSION / ".yarnrc.yml").read_text()


def test_pyproject_ships_the_prebuilt_extension_in_the_wheel() -> None:
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    shared = config["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["exosphere_nb/labextension"] == "share/jupyter/labextensions/exosphere-nb"
    assert shared["jupyter-config/jupyter_server_config.d"] == "etc/jupyter/jupyter_server_config.d"
    enabling = json.loads((REPO / "jupyter-config/jupyter_server_config.d/exosphere_nb.json").read_text())
    assert enabling == {"ServerApp": {"jpserver_extensions": {"exosphere_nb.labserver": True}}}


def test_the_lab_extra_brings_what_the_panel_needs() -> None:
    import tomllib

    extra = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["lab"]
    names = {re.split(r"[<>=\[ ]", req, maxsplit=1)[0].lower() for req in extra}
    assert {"jupyterlab", "jupyter-server", "playwright"} <= names
