"""`toolbox login` and `toolbox logout`: credentials for a registry, as `docker login` keeps them."""

import sys

import typer

from toolbox.cli import common
from toolbox.errors import ToolboxError


def register(app):
    common.add_commands(app, login, logout)


def login(
    registry: str = typer.Argument(..., metavar="REGISTRY", help="Registry host, e.g. ghcr.io or docker.io."),
    username: str = typer.Option(None, "--username", "-u", metavar="USER",
                                 help="The user name (asked on the terminal if not given)."),
    password_stdin: bool = typer.Option(False, "--password-stdin",
                                        help="Read the password or token from standard input."),
):
    """Store credentials for a registry (checked against it first), as `docker login` does."""
    from toolbox.oci.auth import Credentials

    # The user name is asked on standard input, the password on the terminal (getpass).
    if (username is None and not sys.stdin.isatty()) or (not password_stdin and not _has_terminal()):
        raise ToolboxError("toolbox login needs a terminal to ask for the "
                           f"{'user name' if username is None else 'password'}",
                           hint="give both without one: toolbox login -u USER --password-stdin REGISTRY < "
                                "file-with-the-password")
    if username is None:
        username = typer.prompt("Username")
    if password_stdin:
        password = sys.stdin.read().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True)
    if not password:
        raise ToolboxError("empty password",
                           hint="pass the password or token on standard input with --password-stdin")
    host = _registry_host(registry)
    services = common.services()
    credentials = Credentials(username, password)
    client = services.registry_client()
    try:
        client.check_login(host, credentials)
    finally:
        client.close()
    path = services.credentials.store(host, credentials)
    print(f"Login succeeded; credentials stored in {path}")


def logout(registry: str = typer.Argument(..., metavar="REGISTRY", help="Registry host.")):
    """Forget the stored credentials for a registry."""
    host = _registry_host(registry)
    if common.services().credentials.erase(host):
        print(f"Removed credentials for {host}")
    else:
        raise ToolboxError(f"no stored credentials for {host}",
                           hint="nothing to forget; `toolbox login` stores them")


def _has_terminal():
    import os

    try:
        os.close(os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY))
    except OSError:
        return False
    return True


def _registry_host(text):
    from toolbox.oci.reference import canonical_registry

    return canonical_registry(text.removeprefix("https://").removeprefix("http://").split("/", 1)[0])
