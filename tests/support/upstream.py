"""The recipes' upstream registries, mirrored to the loopback registry, and images that stand in
for tools: what tests of tools by name and of shims publish."""

import uuid

from . import images
from .push import push_raw

MIRRORED = {"ghcr.io": "ghcr", "docker.io": "dockerhub", "gcr.io": "gcr"}


class Upstream:
    """The recipes' registries, mirrored to the loopback registry under a prefix of this test's;
    `via` (a FaultProxy in front of the registry) to see or break what toolbox asks."""

    def __init__(self, toolbox, registry, via=None):
        self.registry = registry
        self.prefix = f"t{uuid.uuid4().hex[:10]}"
        host = via.host if via is not None else registry.host
        mirrors = "".join(f'[registries."{upstream}"]\nmirrors = ["http://{host}/{self.prefix}/{path}"]\n'
                          for upstream, path in MIRRORED.items())
        toolbox.trust(registry)
        with open(toolbox.layout.config_file, "a") as config:
            config.write(mirrors)

    def publish(self, image, tag, built):
        host, _, path = image.partition("/")
        return push_raw(self.registry, f"{self.prefix}/{MIRRORED[host]}/{path}", tag, built)


# A project's own recipe (a toolbox.toml section) for a tool published as ghcr.io/example/lint.
LINT = '[recipes.lint]\nimage = "ghcr.io/example/lint"\ndefault_version = "1"\ncommand = ["lint"]\n'

ECHO_SCRIPT = '#!/bin/sh\necho "$(cat /label) $(basename $0):$*"\n'
# Prints the label, then each argument followed by a NUL (exact bytes); `--exit=N` first exits N.
EXACT_SCRIPT = ('#!/bin/sh\ncat /label\nfor a in "$@"; do printf "%s\\0" "$a"; done\n'
                'case "$1" in --exit=*) exit "${1#--exit=}";; esac\n')


def tool_image(label, program="/usr/bin/tool", names=(), architecture="amd64", variant=None, entrypoint=True,
               script=ECHO_SCRIPT):
    """A busybox image whose `program` (and `names`, links to it) runs `script`: by default it
    prints `label` and its arguments."""
    entries = [images.file("label", label + "\n"), images.directory("usr/local"),
               images.directory("usr/local/bin"), images.file(program.lstrip("/"), script, 0o755)]
    entries += [images.symlink(name.lstrip("/"), program) for name in names]
    spec = images.busybox_spec(layers=(images.busybox_layer(), images.Layer(tuple(entries))),
                               architecture=architecture, variant=variant,
                               entrypoint=(program,) if entrypoint else None, cmd=None,
                               labels={"org.example.tool": label})
    return images.build_image(spec)


def multiarch(label, **kw):
    return images.build_index([tool_image(label, **kw),
                               tool_image(label + "-arm64", architecture="arm64", variant="v8", **kw)])
