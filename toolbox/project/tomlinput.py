"""Reading a TOML input file: once, bounded (fsutil.read_input), parsed from the very bytes whose
stamp is kept, so the bytes trusted and planned from are the bytes parsed."""

import tomllib

from toolbox.errors import RecipeError, ToolboxError


def read_toml_input(path: str, error: type[ToolboxError] = RecipeError,
                    what: str = "file") -> tuple[dict | None, tuple | None]:
    """(document, stamp of the bytes parsed), or (None, None) when `path` does not exist."""
    from toolbox.fsutil import read_input

    found = read_input(path, what, error=error)
    if found is None:
        return None, None
    return parse_toml_bytes(found.data, path, error), found.stamp


def parse_toml_bytes(data: bytes, path: str, error: type[ToolboxError] = RecipeError) -> dict:
    try:
        return tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise error(f"{path}: not valid TOML: not UTF-8 at byte {err.start}",
                    hint="fix the encoding") from None
    except tomllib.TOMLDecodeError as err:
        raise error(f"{path}: not valid TOML: {err}", hint="fix the syntax") from None
