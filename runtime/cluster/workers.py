"""Readying a cluster's workers for one run: the model plugin, the OUT marker, and checks with clear errors.

Before any input is sent, every connected worker must have the model (by path, else sent once:
`bundle`) and read the inputs by path; whether it sees OUT only decides who writes the outputs
(`returned`). A worker that joins later is readied by its first task (`ModelMissing` -> `ensure_model`).
"""
from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path

from ..manifest import load_manifest, weights_sha256
from ..pipeline import RunConfig
from . import ClusterError
from .bundle import bundle_bytes, model_bundle
from .devices import processes_per_host
from .plugin import ERROR, READY, ModelPlugin, can_read, describe_worker, install_bundle
from .returned import remove_marker, write_marker
from .start import LOCAL, Connection


def resolve_model_dir(config: RunConfig) -> Path:
    """The client's model folder, absolute (workers load this path); raises as `Segmenter` would."""
    from ..segmenter import default_model_dir

    folder = Path(config.model_dir) if config.model_dir is not None else default_model_dir()
    load_manifest(folder)
    return folder.absolute()


def sees_out(plugin: str, out_dir: str, marker: str, dask_worker=None) -> bool:
    return dask_worker.plugins[plugin].out_shared(out_dir, marker)


class WorkerPool:
    """The model plugin on `conn`'s workers for one run into `out_dir`; `close` removes it again."""

    def __init__(self, conn: Connection, config: RunConfig, out_dir: Path, watch: bool = False):
        self.conn, self.out_dir, self.watch = conn, Path(out_dir), watch
        self.model_dir = resolve_model_dir(config)
        self.weights_sha256 = weights_sha256(self.model_dir)
        local = conn.specs[0] if conn.kind == LOCAL and conn.specs else None
        self.config = replace(config, model_dir=self.model_dir, device=local.device if local else config.device)
        self.threads = local.threads if local else None
        self.plugin_name = f"mitotally-model-{secrets.token_hex(6)}"
        self.marker = ""
        self.workers: dict[str, dict] = {}  # address -> what the worker said (plugin.describe)
        self.shared_out: dict[str, bool] = {}  # address -> writes into OUT itself
        self.sent_model_to: set[str] = set()
        self._bundle: dict[str, bytes] | None = None
        self._registered = False

    # --- start ------------------------------------------------------------------------

    def start(self, sample_input: Path | None) -> "WorkerPool":
        client = self.conn.client
        self.marker = write_marker(self.out_dir)
        hosts = [w["host"] for w in client.scheduler_info()["workers"].values()]
        plugin = ModelPlugin(str(self.model_dir), self.weights_sha256, self.config, self.threads,
                             processes_per_host(hosts), self.watch, ignore_sigint=self.conn.kind == LOCAL)
        client.register_plugin(plugin, name=self.plugin_name)
        self._registered = True
        self.refresh()
        missing = [a for a, w in self.workers.items() if w.get("state") != READY]
        errors = [w for w in self.workers.values() if w.get("state") == ERROR]
        if errors:
            raise ClusterError(f"worker {errors[0]['name']} ({errors[0]['address']}): cannot load the model "
                               f"{self.model_dir}: {errors[0]['why']}")
        if missing:
            self._send_model(missing)
        if sample_input is not None:
            readable = client.run(can_read, str(sample_input))
            blind = [a for a, ok in readable.items() if not ok]
            if blind:
                raise ClusterError(f"{sample_input} is not readable on worker {blind[0]}: workers read the inputs "
                                   "by path, so put them on a file system every worker mounts at the same path")
        self.shared_out = client.run(sees_out, self.plugin_name, str(self.out_dir), self.marker)
        return self

    def refresh(self) -> dict[str, dict]:
        """Ask every worker how it is (model state, device, backend, scale estimates)."""
        said = self.conn.client.run(describe_worker, self.plugin_name, on_error="return")
        self.workers = {a: w for a, w in said.items() if isinstance(w, dict)} or self.workers
        return self.workers

    def _send_model(self, addresses: list[str]) -> None:
        if self._bundle is None:
            try:
                self._bundle = model_bundle(self.model_dir)
            except OSError as exc:
                raise ClusterError(f"cannot read the model to send it to the workers: {exc}") from None
        said = self.conn.client.run(install_bundle, self.plugin_name, self._bundle, workers=addresses)
        self.sent_model_to |= set(addresses)
        self.workers.update(said)
        bad = [w for w in said.values() if w.get("state") != READY]
        if bad:
            raise ClusterError(f"worker {bad[0]['name']} ({bad[0]['address']}): cannot load the model sent to it: "
                               f"{bad[0]['why']}")

    def ensure_model(self, address: str) -> None:
        """A worker that joined after the start has no model: send it (raises `ClusterError` if it cannot load)."""
        self._send_model([address])

    # --- what the client reports -----------------------------------------------------

    def out_notice(self) -> str:
        """One line when some workers do not see OUT (their outputs travel back here), else ''."""
        blind = [a for a, shared in self.shared_out.items() if not shared]
        if not blind:
            return ""
        return (f"{len(blind)} of {len(self.shared_out)} worker(s) do not see {self.out_dir} (not on a file system "
                f"they share): they send their outputs back and this machine writes them")

    def model_notice(self) -> str:
        if not self.sent_model_to:
            return ""
        size = bundle_bytes(self._bundle or {}) / 2**20
        return (f"{len(self.sent_model_to)} worker(s) could not read the model folder {self.model_dir}: "
                f"sent them its files ({size:.0f} MiB each, once)")

    def close(self) -> None:
        if self._registered:
            try:
                self.conn.client.unregister_worker_plugin(self.plugin_name)
            except Exception:  # noqa: BLE001 - the cluster may be gone already; the plugin goes with it
                pass
            self._registered = False
        if self.marker:
            remove_marker(self.out_dir, self.marker)
