"""Two sibling projects that pin different versions of the real jq recipe (1.6 in `a`, 1.7.1 in
`b`), a directory with no project (`elsewhere`), and jq's shim installed: what tests of shims
call. jq's upstream image is served by the loopback registry (tests/support/upstream.py)."""

import os
import subprocess
import sys

from .upstream import EXACT_SCRIPT, Upstream, tool_image


class Projects:
    """The projects under `root`, with jq's shim in `shims` and `env` a PATH that finds it."""

    def __init__(self, toolbox, registry, root):
        self.toolbox = toolbox
        self.upstream = Upstream(toolbox, registry)
        for version in ("1.6", "1.7.1"):
            self.upstream.publish("ghcr.io/jqlang/jq", version,
                                  tool_image(f"jq-{version}", script=EXACT_SCRIPT))
        self.a, self.b, self.elsewhere = root / "a", root / "b", root / "elsewhere"
        for directory, version in ((self.a, "1.6"), (self.b, "1.7.1")):
            directory.mkdir()
            (directory / "toolbox.toml").write_text(f'[tools]\njq = "{version}"\n')
        self.elsewhere.mkdir()
        self.shims = toolbox.layout.shims_dir
        installed = self.cli("shim", "install", "jq", cwd=root)
        assert installed.returncode == 0, installed.stderr
        self.env = dict(toolbox.env, PATH=f"{self.shims}:{toolbox.env['PATH']}")

    def cli(self, *args, cwd):
        return subprocess.run([sys.executable, "-m", "toolbox", *args], env=self.toolbox.env, cwd=cwd,
                              capture_output=True, text=True, timeout=120)

    def shim(self, *args, cwd, env=None, input=None):
        return subprocess.run([os.path.join(self.shims, "jq"), *args], env=dict(self.env, **(env or {})),
                              cwd=cwd, capture_output=True, input=input, timeout=120)
