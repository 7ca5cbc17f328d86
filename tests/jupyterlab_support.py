"""A real JupyterLab server for the browser test: token-protected, on loopback, isolated from the developer's
Jupyter settings, and stopped with every process it started (kernels included), even after a failure."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import IO

import psutil

# JupyterLab user settings for the test: no news or update toasts over the page, every cell rendered
# (windowing would leave cells outside the viewport unrendered, widgets included), and widget state saved with
# the notebook, as a user who turned on "Save Widget State Automatically" has it: the test reads what is saved.
_LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyter-widgets/jupyterlab-manager/plugin.jupyterlab-settings": {"saveState": True},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class JupyterLab:
    """``jupyter lab`` serving ``root_dir``, started by :meth:`start`, stopped (with its kernels) by :meth:`stop`.

    ``env`` is added to this process's environment; Jupyter's config, data, runtime, settings and workspace
    directories are moved under ``state_dir`` so nothing of the developer's setup leaks in or is changed.
    The server's output goes to ``log_path``.
    """

    def __init__(self, root_dir: Path, state_dir: Path, log_path: Path, env: dict[str, str]) -> None:
        self.root_dir = root_dir
        self.state_dir = state_dir
        self.log_path = log_path
        self.extra_env = env
        self.port = free_port()
        self.token = secrets.token_hex(24)
        self.url = f"http://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._seen: dict[int, psutil.Process] = {}

    def _environment(self) -> dict[str, str]:
        dirs = {
            name: self.state_dir / sub
            for name, sub in (
                ("JUPYTER_CONFIG_DIR", "config"),
                ("JUPYTER_DATA_DIR", "data"),
                ("JUPYTER_RUNTIME_DIR", "runtime"),
                ("JUPYTERLAB_SETTINGS_DIR", "settings"),
                ("JUPYTERLAB_WORKSPACES_DIR", "workspaces"),
                ("IPYTHONDIR", "ipython"),
            )
        }
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        for name, settings in _LAB_SETTINGS.items():
            target = dirs["JUPYTERLAB_SETTINGS_DIR"] / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(json.dumps(settings))
        env = {**os.environ, **{name: str(path) for name, path in dirs.items()}, **self.extra_env}
        # The kernelspec runs "python": make that this venv's interpreter, whatever PATH the tests got.
        env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
        env.pop("JUPYTER_PATH", None)
        return env

    def start(self, timeout: float = 90) -> None:
        cmd = [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.open_browser=False",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--ServerApp.root_dir={self.root_dir}",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            cmd.append("--allow-root")  # CI runs as root on a throwaway machine
        self._log = self.log_path.open("wb")
        self._proc = subprocess.Popen(cmd, env=self._environment(), stdout=self._log, stderr=subprocess.STDOUT)
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with status {self._proc.returncode}; see {self.log_path}")
            try:
                self.api("/api/status")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise TimeoutError(f"JupyterLab did not answer /api/status within {timeout:.0f}s; see {self.log_path}")

    def api(self, path: str, method: str = "GET") -> object:
        request = urllib.request.Request(
            self.url + path, method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def lab_url(self, notebook: str) -> str:
        """The page that opens ``notebook`` in a fresh workspace, logging in with the token."""
        return f"{self.url}/lab/tree/{notebook}?reset&token={self.token}"

    def kernel_states(self) -> list[str]:
        kernels = self.api("/api/kernels")
        assert isinstance(kernels, list)
        return [kernel["execution_state"] for kernel in kernels]

    def _remember_children(self) -> None:
        """Note every process the server started so far, so they can be ended even if the server dies first."""
        if self._proc is None:
            return
        try:
            for child in psutil.Process(self._proc.pid).children(recursive=True):
                self._seen.setdefault(child.pid, child)
        except psutil.NoSuchProcess:
            pass

    def watch(self) -> None:
        """Call while the server is busy (kernels running): records its child processes for :meth:`stop`."""
        self._remember_children()

    def stop(self) -> None:
        """Shut the server down (it shuts its kernels down), then end whatever of its processes is left."""
        if self._proc is None:
            return
        self._remember_children()
        try:
            if self._proc.poll() is None:
                try:
                    self.api("/api/shutdown", method="POST")
                except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                    self._proc.terminate()
                try:
                    self._proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(timeout=10)
        finally:
            leftovers = [proc for proc in self._seen.values() if _alive(proc)]
            for proc in leftovers:
                with contextlib.suppress(psutil.NoSuchProcess):  # ended meanwhile: fine
                    proc.terminate()
            _, still = psutil.wait_procs(leftovers, timeout=10)
            for proc in still:
                with contextlib.suppress(psutil.NoSuchProcess):  # ended meanwhile: fine
                    proc.kill()
            if self._log is not None:
                self._log.close()
            self._proc = None


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
