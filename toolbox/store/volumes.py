"""Named volumes: directories in toolbox's data directory that `toolbox run -v NAME:/path`
mounts, kept between runs until removed."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

from toolbox import fsutil
from toolbox.errors import ToolboxError
from toolbox.layout import Layout


@dataclass(frozen=True)
class VolumeInfo:
    name: str
    path: str
    size: int
    created: str

    def to_json(self) -> dict[str, str | int]:
        return dict(self.__dict__)


def _info(layout, name):
    path = layout.volume_data(name)
    created = datetime.datetime.fromtimestamp(os.stat(os.path.dirname(path)).st_ctime, datetime.timezone.utc)
    return VolumeInfo(name, path, fsutil.disk_usage(path), created.replace(microsecond=0).isoformat())


def list_volumes(layout: Layout) -> list[VolumeInfo]:
    try:
        names = sorted(os.listdir(layout.volumes_dir))
    except FileNotFoundError:
        return []
    return [_info(layout, name) for name in names if os.path.isdir(layout.volume_data(name))]


def inspect_volume(layout: Layout, name: str) -> VolumeInfo:
    if not os.path.isdir(layout.volume_data(name)):
        raise ToolboxError(f"no volume named {name!r}",
                           hint="`toolbox volume ls` lists them; `toolbox run -v NAME:/path` creates one")
    return _info(layout, name)


def remove_volume(layout: Layout, name: str) -> VolumeInfo:
    from toolbox.runtime.subids import remove_tree_any_owner

    info = inspect_volume(layout, name)
    remove_tree_any_owner(os.path.dirname(info.path))  # a service may have chowned its files
    return info


def create_volume(layout: Layout, name: str) -> tuple[VolumeInfo, bool]:
    """`toolbox volume create NAME`: the volume `-v NAME:/path` would make on first use. Its
    name is checked as `run` checks it; an existing volume is left as it is (as docker does)."""
    from toolbox.runtime.containers import check_name

    path = layout.volume_data(check_name(name, "volume"))
    existed = os.path.isdir(path)
    os.makedirs(path, exist_ok=True)
    return _info(layout, name), existed
