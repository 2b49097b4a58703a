"""Use cases over stored images: list, inspect, remove, garbage-collect, disk usage."""

from dataclasses import dataclass

from toolbox.errors import ImageNotStored


@dataclass(frozen=True)
class ImageSummary:
    reference: str
    digest: str  # what to pull again by: the index digest when there is one
    manifest_digest: str
    platform: str
    size: int  # bytes on disk of its unpacked layers
    pulled_at: str
    layers: int
    complete: bool  # every layer is in the store

    def to_json(self):
        return dict(self.__dict__)


@dataclass(frozen=True)
class ImageUsage:
    reference: str
    size: int
    shared: int  # bytes in layers other images use too
    unique: int  # bytes only this image uses: what removing it frees


@dataclass(frozen=True)
class DiskUsage:
    images: tuple
    layers_bytes: int
    layers_count: int
    blobs_bytes: int
    blobs_count: int
    reclaimable: int  # bytes of layers and blobs no image needs: what `prune` frees

    def to_json(self):
        return {
            "images": [u.__dict__ for u in self.images],
            "layers_bytes": self.layers_bytes,
            "layers_count": self.layers_count,
            "blobs_bytes": self.blobs_bytes,
            "blobs_count": self.blobs_count,
            "reclaimable": self.reclaimable,
        }


def _layer_bytes(store, diff_id):
    return store.layer_info(diff_id).get("disk_bytes", 0)


def list_images(store):
    summaries = []
    for record in store.records():
        try:
            image = store.load_image(record)
        except ImageNotStored:
            summaries.append(ImageSummary(record.reference, str(record.index_digest or record.digest),
                                          str(record.digest), record.platform, 0, record.pulled_at, 0, False))
            continue
        summaries.append(
            ImageSummary(
                reference=record.reference,
                digest=str(record.index_digest or record.digest),
                manifest_digest=str(record.digest),
                platform=record.platform,
                size=sum(_layer_bytes(store, d) for d in set(image.diff_ids)),
                pulled_at=record.pulled_at,
                layers=len(image.diff_ids),
                complete=not store.missing_layers(image),
            )
        )
    return summaries


def inspect_image(store, text):
    record = store.get(text)
    image = store.load_image(record)
    layers = [
        {"digest": str(desc.digest), "diff_id": str(diff_id), "media_type": desc.media_type,
         "size": desc.size, "unpacked_bytes": _layer_bytes(store, diff_id),
         "stored": store.has_layer(diff_id)}
        for desc, diff_id in zip(image.manifest.layers, image.diff_ids)
    ]
    return {
        "reference": record.reference,
        "digest": str(record.digest),
        "index_digest": str(record.index_digest) if record.index_digest else None,
        "config_digest": str(image.config_digest),
        "pulled_at": record.pulled_at,
        "config": image.config.to_json(),
        "layers": layers,
    }


def remove_images(store, texts, typed=None):
    """Remove these references, then whatever no remaining image needs; returns the records
    removed and the GcReport. All names are checked before anything is removed, so a typo in the
    list removes nothing. `typed` is what the user typed for each text (a tool name, for the
    image it runs here), for the message."""
    records = []
    for text, word in zip(texts, typed or texts):
        try:
            records.extend(store.get_all(text))
        except ImageNotStored:
            shown = repr(text) if word == text else f"{word!r} ({text} here)"
            raise ImageNotStored(f"{shown} is not in the store: nothing to remove",
                                 hint="`toolbox images` lists the stored images") from None
    with store.exclusive_lock():
        for record in records:
            store.remove_record(record)
        report = store.collect_garbage()
    return records, report


def prune(store):
    store.prepare()
    with store.exclusive_lock():
        return store.collect_garbage()


@dataclass(frozen=True)
class UnusedImages:
    """Stored images no lock uses (`prune --unused`), and what removing them frees."""

    images: tuple  # (ImageRecord, bytes of its layers)
    bytes_freed: int  # layers and blobs only they need (before removal: what removing them would free)
    report: object = None  # the GcReport, once removed


def unused_images(store, used):
    """The stored images for which `used(record)` is false and from which no named container
    was made, with what removing them would free."""
    import os

    from toolbox.runtime import containers

    made_from = set()
    for name in containers.names(store.layout):
        record = containers.read_record(os.path.join(store.layout.containers_dir, name))
        if record is not None:
            made_from.add(record["reference"])
    records = store.records()
    unused = [r for r in records if not used(r) and r.reference not in made_from]
    kept = [r for r in records if r not in unused]
    needed_blobs, needed_layers = store.referenced(kept)
    dropped_blobs, dropped_layers = store.needed_by(unused)
    sizes = []
    for record in unused:
        try:
            diff_ids = set(store.load_image(record).diff_ids)
        except ImageNotStored:
            diff_ids = set()
        sizes.append((record, sum(_layer_bytes(store, d) for d in diff_ids)))
    freed = sum(_layer_bytes(store, d) for d in dropped_layers - needed_layers if store.has_layer(d))
    freed += sum(store.blob_size(d) for d in dropped_blobs - needed_blobs)
    return UnusedImages(tuple(sizes), freed)


def prune_unused(store, used):
    """Remove the unused_images, then whatever no remaining image needs (prune)."""
    store.prepare()
    with store.exclusive_lock():
        unused = unused_images(store, used)
        for record, _size in unused.images:
            store.remove_record(record)
        report = store.collect_garbage()
    return UnusedImages(unused.images, report.bytes_freed, report)


def disk_usage(store):
    images = []
    users = {}  # diff_id -> number of images using it
    loaded = []
    for record in store.records():
        try:
            image = store.load_image(record)
        except ImageNotStored:
            continue
        diff_ids = set(image.diff_ids)
        loaded.append((record, diff_ids))
        for diff_id in diff_ids:
            users[diff_id] = users.get(diff_id, 0) + 1
    for record, diff_ids in loaded:
        size = sum(_layer_bytes(store, d) for d in diff_ids)
        unique = sum(_layer_bytes(store, d) for d in diff_ids if users[d] == 1)
        images.append(ImageUsage(record.reference, size, size - unique, unique))
    stored_layers = store.stored_layers()
    stored_blobs = store.stored_blobs()
    referenced_blobs, referenced_layers = store.referenced()
    layer_sizes = {d: _layer_bytes(store, d) for d in stored_layers}
    blob_sizes = {d: store.blob_size(d) for d in stored_blobs}
    return DiskUsage(
        images=tuple(images),
        layers_bytes=sum(layer_sizes.values()),
        layers_count=len(stored_layers),
        blobs_bytes=sum(blob_sizes.values()),
        blobs_count=len(stored_blobs),
        reclaimable=(sum(s for d, s in layer_sizes.items() if d not in referenced_layers)
                     + sum(s for d, s in blob_sizes.items() if d not in referenced_blobs)),
    )
