"""One isolated toolbox installation under test (its own store, config and credentials files),
driven in-process or through its CLI; and the checkout the suite tests."""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]  # the checkout: what PYTHONPATH and scripts/install use


class RecordingProgress:
    """Keeps what a pull reported, to tell which layers it really downloaded."""

    def __init__(self):
        self.layers = []
        self.downloaded = []

    def resolved(self, reference, digest, platform, layers):
        self.layers = list(layers)

    def layer_advanced(self, layer, done_bytes):
        pass

    def layer_done(self, layer, stats):
        if stats is not None:
            self.downloaded.append(layer.diff_id)


class ToolboxUnderTest:
    """One isolated toolbox installation: its own store, config and credentials files."""

    def __init__(self, root):
        self.root = Path(root)
        self.home = self.root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        (self.root / "run").mkdir(mode=0o700, exist_ok=True)
        self.env = {
            "HOME": str(self.home),
            "TOOLBOX_HOME": str(self.root / "toolbox"),
            "XDG_RUNTIME_DIR": str(self.root / "run"),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "TOOLBOX_RETRIES": "2",
            "TOOLBOX_RETRY_BACKOFF": "0.05",
            "PYTHONPATH": str(REPO),
        }
        from toolbox.layout import Layout

        self.layout = Layout.from_env(self.env)

    def trust(self, *registries):
        """Let toolbox reach these test registries (insecure HTTP, or their CA)."""
        path = Path(self.layout.config_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as config:
            for server in registries:
                config.write(server.toolbox_config_toml())

    def services(self):
        from toolbox.ops.wiring import load_services

        return load_services(self.layout, self.env)

    @property
    def store(self):
        return self.services().store

    def pull(self, reference, platform=None, progress=None):
        from toolbox.oci.platform import Platform
        from toolbox.oci.reference import ImageRef
        from toolbox.ops.pull import PullOptions, pull_image

        services = self.services()
        client = services.registry_client()
        try:
            options = PullOptions(platform=Platform.parse(platform) if platform else None)
            return pull_image(ImageRef.parse(reference), store=services.store, client=client, options=options,
                              progress=progress)
        finally:
            client.close()

    def cli(self, *args, input=None, timeout=120):
        return subprocess.run(
            [sys.executable, "-m", "toolbox", *args],
            env=self.env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def leftovers(self):
        """Temp entries still in the store (there must be none once toolbox is done)."""
        tmp = Path(self.layout.tmp_dir)
        return sorted(p.name for p in tmp.iterdir()) if tmp.exists() else []

    def layer_dirs(self):
        root = Path(self.layout.layers_dir) / "sha256"
        return sorted(p.name for p in root.iterdir()) if root.exists() else []


def cli(toolbox, *args, cwd, env=None, input=None):
    """`toolbox ARGS` as text, run in `cwd` (a project's directory), with `env` over the
    installation's own environment."""
    return subprocess.run([sys.executable, "-m", "toolbox", *args], env=dict(toolbox.env, **(env or {})),
                          cwd=cwd, capture_output=True, text=True, timeout=120, input=input)
