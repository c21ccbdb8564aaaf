"""The Jupyter server extension behind the JupyterLab panel: it proxies to state managers, so keys stay here.

Enabled by `jupyter-config/jupyter_server_config.d/exosphere_nb.json`, which `pip install exosphere_nb[lab]`
installs. Settings (in a Jupyter config file or on the command line):

- `ExosphereLab.connections_file`: the saved remote state managers (default:
  `<jupyter data dir>/exosphere_nb/lab_connections.json`, mode 0600).
- `ExosphereLab.request_timeout`: seconds to wait for a state manager (default 15).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traitlets import Float, Unicode, default
from traitlets.config import Configurable

__all__ = ["ExosphereLab"]

EXTENSION_MODULE = "exosphere_nb.labserver"


class ExosphereLab(Configurable):
    connections_file = Unicode(help="JSON file of the saved remote state managers (it holds their keys)").tag(
        config=True
    )
    request_timeout = Float(15.0, help="Seconds to wait for a state manager's answer").tag(config=True)

    @default("connections_file")
    def _default_connections_file(self) -> str:
        from jupyter_core.paths import jupyter_data_dir

        return str(Path(jupyter_data_dir()) / "exosphere_nb" / "lab_connections.json")


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": EXTENSION_MODULE}]


def _load_jupyter_server_extension(serverapp: Any) -> None:
    from .connections import RemoteStore
    from .handlers import ExtensionState, route_table

    settings = ExosphereLab(parent=serverapp)
    state = ExtensionState(RemoteStore(settings.connections_file), settings.request_timeout, serverapp)
    base_url = serverapp.web_app.settings["base_url"]
    serverapp.web_app.add_handlers(".*$", route_table(base_url, state))
    serverapp.web_app.settings["exosphere_nb_lab"] = state
    serverapp.log.info("exosphere_nb: JupyterLab panel API at %sexosphere-nb/api/", base_url)
