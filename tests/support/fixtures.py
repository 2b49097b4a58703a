"""pytest fixtures: local registries and the test images pushed to them (session-scoped), and
what a test's toolbox takes from them (busybox, upstream).

Load them from tests/conftest.py with `pytest_plugins = ["tests.support.fixtures"]` (registered
once, however many modules name it). Every fixture skips with the reason when docker-registry or
skopeo is missing (tests/support/markers.py: needs_registry, needs_program), and only then.
"""

import pytest

from . import push as _push
from .markers import require
from .registry import RegistryServer
from .upstream import Upstream

__all__ = ["busybox", "other_user", "registry", "tls_registry", "basic_registry", "token_registry",
           "token_tls_registry", "registry_factory", "pushed_images", "tls_pushed_images",
           "basic_pushed_images", "token_pushed_images", "upstream"]

SCENARIOS_ON_AUTH_REGISTRIES = ("busybox", "multiarch")


def _serve(tmp_path_factory, mode, **kw):
    require("needs_registry")
    return RegistryServer(tmp_path_factory.mktemp(f"registry-{mode}"), mode, **kw)


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """Plain HTTP, anonymous."""
    with _serve(tmp_path_factory, "plain") as server:
        yield server


@pytest.fixture(scope="session")
def tls_registry(tmp_path_factory):
    """HTTPS, anonymous; trust it through `.ca_file` only."""
    with _serve(tmp_path_factory, "tls") as server:
        yield server


@pytest.fixture(scope="session")
def basic_registry(tmp_path_factory):
    """HTTPS + htpasswd: `.username` ("alice"), `.password`, `.ca_file`."""
    with _serve(tmp_path_factory, "basic") as server:
        yield server


@pytest.fixture(scope="session")
def token_registry(tmp_path_factory):
    """HTTP + Docker token auth through `.token_server`: `.username` ("bob") may pull and push
    everything, anonymous users may pull `public/*`."""
    with _serve(tmp_path_factory, "token") as server:
        yield server


@pytest.fixture(scope="session")
def token_tls_registry(tmp_path_factory):
    """Like token_registry, but the registry and its token server are HTTPS (trust `.ca_file`)."""
    with _serve(tmp_path_factory, "token_tls") as server:
        yield server


@pytest.fixture(scope="session")
def registry_factory(tmp_path_factory):
    """start(mode="plain", **kw) -> a new RegistryServer of its own, stopped at the end of the
    session: for tests that delete, corrupt or stop a registry."""
    require("needs_registry")
    started = []

    def start(mode="plain", **kw):
        server = RegistryServer(tmp_path_factory.mktemp(f"registry-{mode}"), mode, **kw).start()
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        server.stop()


@pytest.fixture(scope="session")
def pushed_images(registry, tmp_path_factory):
    """Every scenario in push.SCENARIOS pushed once to `registry`: name -> PushedImage."""
    require("needs_program", "skopeo")
    return _push.push_scenarios(registry, tmp_path_factory.mktemp("push-plain"))


@pytest.fixture(scope="session")
def tls_pushed_images(tls_registry, tmp_path_factory):
    require("needs_program", "skopeo")
    return _push.push_scenarios(tls_registry, tmp_path_factory.mktemp("push-tls"),
                                SCENARIOS_ON_AUTH_REGISTRIES)


@pytest.fixture(scope="session")
def basic_pushed_images(basic_registry, tmp_path_factory):
    require("needs_program", "skopeo")
    return _push.push_scenarios(basic_registry, tmp_path_factory.mktemp("push-basic"),
                                SCENARIOS_ON_AUTH_REGISTRIES)


@pytest.fixture(scope="session")
def token_pushed_images(token_registry, tmp_path_factory):
    """{"public": {name: PushedImage}, "private": {...}}: the same images under public/ (anonymous
    pull allowed) and private/ (bob only). The token server's request log is reset afterwards."""
    require("needs_program", "skopeo")
    workdir = tmp_path_factory.mktemp("push-token")
    pushed = {
        visibility: _push.push_scenarios(token_registry, workdir / visibility, SCENARIOS_ON_AUTH_REGISTRIES,
                                         repository_prefix=f"{visibility}/")
        for visibility in ("public", "private")
    }
    token_registry.token_server.reset()
    return pushed


@pytest.fixture(scope="session")
def other_user():
    """Another local account (tests/support/other_user.py), which scripts/test starts as root."""
    import os

    from .other_user import SOCKET_ENV, OtherUser

    path = os.environ.get(SOCKET_ENV)
    if not path:
        pytest.skip("needs a second local account: scripts/test run as root creates toolbox-other")
    return OtherUser(path)


@pytest.fixture
def busybox(toolbox, registry, pushed_images):
    """The busybox test image, pulled into the test's toolbox: its reference."""
    toolbox.trust(registry)
    image = pushed_images["busybox"]
    toolbox.pull(image.reference)
    return image.reference


@pytest.fixture
def upstream(toolbox, registry):
    """The recipes' upstream registries, mirrored to `registry` for this test's toolbox
    (tests/support/upstream.py): publish tools there by their upstream names."""
    return Upstream(toolbox, registry)
