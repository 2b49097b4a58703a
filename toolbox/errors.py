"""Error types. Library code raises these; only the CLI and the shim print them.

Every error says what went wrong and, in `hint`, what the user can do next. The exit codes follow
env(1) and podman: 125 when toolbox itself fails, 126 when the command cannot be run, 127 when it
is not found; otherwise the tool's own status.
"""

EXIT_TOOLBOX_FAILED = 125
EXIT_CANNOT_RUN = 126
EXIT_NOT_FOUND = 127


class ToolboxError(Exception):
    exit_code = EXIT_TOOLBOX_FAILED

    def __init__(self, message, hint=None):
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self):
        return self.message


class InvalidReference(ToolboxError, ValueError):
    """An image reference, digest or platform that does not parse."""


class ConfigError(ToolboxError):
    """A user configuration file that is malformed or names something impossible."""


class RegistryError(ToolboxError):
    """The registry answered something we cannot use, or could not be reached."""


class AuthError(RegistryError):
    """The registry refused our credentials (or demanded some we do not have)."""


class NotFound(RegistryError):
    """The repository, tag, digest or platform does not exist."""


class IntegrityError(ToolboxError):
    """Content did not match the digest or size that named it. Nothing was kept."""


class UnsupportedImage(ToolboxError):
    """A manifest, media type or layer format toolbox does not handle."""


class LayerError(ToolboxError):
    """A layer archive that is malformed or hostile. Nothing of it was kept."""


class StoreError(ToolboxError):
    """The local store cannot complete the operation (disk full, permissions, missing image)."""


class ImageNotStored(StoreError):
    """The image is not in the local store."""
