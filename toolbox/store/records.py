"""What the store keeps about images: one ImageRecord per stored reference (a JSON file in
images/, naming the manifest chosen for the platform), and a StoredImage once its manifest and
config have been read from the blobs."""

from __future__ import annotations

from dataclasses import dataclass

from toolbox.oci.digest import Digest
from toolbox.oci.manifest import ImageConfig, Manifest


@dataclass(frozen=True)
class ImageRecord:
    reference: str  # normalised: registry/repository[:tag][@digest]
    digest: Digest  # the image manifest for the chosen platform
    platform: str
    pulled_at: str
    index_digest: Digest | None = None
    source: str = "registry"  # or "load"

    def to_json(self) -> dict[str, str | None]:
        return {
            "reference": self.reference,
            "digest": str(self.digest),
            "index_digest": str(self.index_digest) if self.index_digest else None,
            "platform": self.platform,
            "pulled_at": self.pulled_at,
            "source": self.source,
        }

    @classmethod
    def from_json(cls, doc: dict) -> ImageRecord:
        return cls(
            reference=doc["reference"],
            digest=Digest.parse(doc["digest"]),
            index_digest=Digest.parse(doc["index_digest"]) if doc.get("index_digest") else None,
            platform=doc.get("platform", ""),
            pulled_at=doc.get("pulled_at", ""),
            source=doc.get("source", "registry"),
        )


@dataclass(frozen=True)
class StoredImage:
    record: ImageRecord
    manifest: Manifest
    config: ImageConfig
    config_digest: Digest

    @property
    def diff_ids(self) -> tuple[Digest, ...]:
        return self.config.diff_ids
