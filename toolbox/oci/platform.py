"""Platforms (os/architecture/variant) and choosing one from a multi-platform index."""

from __future__ import annotations

import platform as _stdlib_platform
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from toolbox.errors import InvalidReference

# uname -m → OCI architecture and, where it matters, variant (image-index.md, Go's GOARCH).
_MACHINE_TO_OCI = {
    "x86_64": ("amd64", None),
    "amd64": ("amd64", None),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i686": ("386", None),
    "i386": ("386", None),
    "ppc64le": ("ppc64le", None),
    "s390x": ("s390x", None),
    "riscv64": ("riscv64", None),
}


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str | None = None

    @classmethod
    def parse(cls, text: str) -> Platform:
        parts = (text or "").split("/")
        if len(parts) not in (2, 3) or not all(parts):
            raise InvalidReference(f"invalid platform {text!r}",
                                   hint="use os/arch or os/arch/variant, e.g. linux/arm64")
        os_, arch = parts[0].lower(), parts[1].lower()
        variant = parts[2].lower() if len(parts) == 3 else None
        # aarch64 and x86_64 are what people type; OCI says arm64 and amd64.
        arch, default_variant = _MACHINE_TO_OCI.get(arch, (arch, None))
        if arch == "arm64" and variant is None:
            variant = default_variant
        return cls(os_, arch, variant)

    @classmethod
    def from_descriptor(cls, platform_json: Mapping[str, Any]) -> Platform:
        return cls(
            platform_json.get("os", ""),
            platform_json.get("architecture", ""),
            platform_json.get("variant") or None,
        )

    def matches(self, candidate: Platform) -> bool:
        """Whether an index entry for `candidate` can run here. arm64 images rarely name their
        variant, so a missing variant on either side counts as v8 for arm64 and as a match
        otherwise."""
        if (self.os, self.architecture) != (candidate.os, candidate.architecture):
            return False
        if self.variant is None or candidate.variant is None:
            return True
        return self.variant == candidate.variant

    def __str__(self) -> str:
        return f"{self.os}/{self.architecture}" + (f"/{self.variant}" if self.variant else "")


def host_platform() -> Platform:
    arch, variant = _MACHINE_TO_OCI.get(_stdlib_platform.machine(), (_stdlib_platform.machine(), None))
    return Platform("linux", arch, variant)
