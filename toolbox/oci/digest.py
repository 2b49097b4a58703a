"""Content digests (OCI image spec, descriptor.md#digests)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Protocol

from toolbox.errors import InvalidReference

# The algorithms we can verify. sha512 is registered by the spec; blake3 etc. are not verifiable
# with the standard library, so they are refused rather than trusted blindly.
_HEX_LENGTHS = {"sha256": 64, "sha512": 128}
_DIGEST_RE = re.compile(r"^([a-z0-9]+(?:[+._-][a-z0-9]+)*):([a-zA-Z0-9=_-]+)$")


class Hasher(Protocol):
    """What hashlib.new gives, as far as we use it."""

    def update(self, data: bytes, /) -> None: ...

    def hexdigest(self) -> str: ...


@dataclass(frozen=True, order=True)
class Digest:
    algorithm: str
    hex: str

    @classmethod
    def parse(cls, text: str) -> Digest:
        match = _DIGEST_RE.match(text or "")
        if not match:
            raise InvalidReference(f"invalid digest {text!r}",
                                   hint="a digest looks like sha256:<64 hex digits>")
        algorithm, hex_ = match.groups()
        expected = _HEX_LENGTHS.get(algorithm)
        if expected is None:
            raise InvalidReference(f"unsupported digest algorithm in {text!r}",
                                   hint="toolbox verifies sha256 and sha512 digests")
        if len(hex_) != expected or not re.fullmatch(r"[0-9a-f]+", hex_):
            raise InvalidReference(f"invalid {algorithm} digest {text!r}: expected {expected} lowercase hex "
                                   "digits")
        return cls(algorithm, hex_)

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str = "sha256") -> Digest:
        return cls(algorithm, hashlib.new(algorithm, data).hexdigest())

    def hasher(self) -> Hasher:
        return hashlib.new(self.algorithm)

    def matches(self, data: bytes) -> bool:
        return hashlib.new(self.algorithm, data).hexdigest() == self.hex

    @property
    def short(self) -> str:
        return self.hex[:12]

    @property
    def encoded(self) -> str:
        """A name safe for one path component (the store keys by `algorithm` then hex)."""
        return self.hex if self.algorithm == "sha256" else f"{self.algorithm}-{self.hex}"

    def __str__(self) -> str:
        return f"{self.algorithm}:{self.hex}"
