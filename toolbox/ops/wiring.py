"""Builds the cold-tier services from the environment: one place that knows how they fit."""

import os
from dataclasses import dataclass

from toolbox.layout import Layout


@dataclass(frozen=True)
class Services:
    layout: Layout
    config: object  # UserConfig
    credentials: object  # CredentialStore
    store: object  # Store
    environ: object  # the environment they were built from

    def registry_client(self):
        from toolbox.oci.registry import RegistryClient
        from toolbox.oci.transport import ClientSettings

        return RegistryClient(self.config, self.credentials, ClientSettings.from_env(self.environ))


def load_services(layout=None, environ=None):
    from toolbox.oci.auth import CredentialStore
    from toolbox.project.config import UserConfig
    from toolbox.store.store import SpaceReserve, Store
    from toolbox.store.unpack import UnpackLimits

    environ = os.environ if environ is None else environ
    layout = layout or Layout.from_env(environ)
    credentials = CredentialStore(environ=environ, home=environ.get("HOME"))
    store = Store(layout, UnpackLimits.from_env(environ), SpaceReserve.from_env(environ))
    return Services(layout, UserConfig.load(layout.config_file), credentials, store, environ)
