import json

import pytest

from toolbox.errors import NotFound, UnsupportedImage
from toolbox.oci.digest import Digest
from toolbox.oci.manifest import (
    DOCKER_LIST,
    DOCKER_MANIFEST,
    OCI_INDEX,
    OCI_MANIFEST,
    Index,
    Manifest,
    parse_config,
    parse_manifest,
)
from toolbox.oci.platform import Platform


def descriptor(data=b"x", media_type="application/vnd.oci.image.layer.v1.tar+gzip", platform=None,
               annotations=None):
    d = {"mediaType": media_type, "digest": str(Digest.of_bytes(data)), "size": len(data)}
    if platform:
        d["platform"] = platform
    if annotations:
        d["annotations"] = annotations
    return d


def manifest_doc(media_type=OCI_MANIFEST, layers=1):
    return {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": descriptor(b"{}", "application/vnd.oci.image.config.v1+json"),
        "layers": [descriptor(bytes([i])) for i in range(layers)],
    }


def index_doc(media_type=OCI_INDEX):
    return {
        "schemaVersion": 2,
        "mediaType": media_type,
        "manifests": [
            descriptor(b"amd", OCI_MANIFEST, {"os": "linux", "architecture": "amd64"}),
            descriptor(b"arm", OCI_MANIFEST, {"os": "linux", "architecture": "arm64", "variant": "v8"}),
            descriptor(
                b"att",
                OCI_MANIFEST,
                {"os": "unknown", "architecture": "unknown"},
                {"vnd.docker.reference.type": "attestation-manifest"},
            ),
        ],
    }


def test_oci_and_docker_manifests_parse():
    for media_type in (OCI_MANIFEST, DOCKER_MANIFEST):
        manifest = parse_manifest(json.dumps(manifest_doc(media_type, layers=2)).encode())
        assert isinstance(manifest, Manifest) and len(manifest.layers) == 2


def test_media_type_from_header_or_shape_when_document_omits_it():
    doc = manifest_doc()
    del doc["mediaType"]
    assert isinstance(parse_manifest(json.dumps(doc).encode()), Manifest)
    idx = index_doc()
    del idx["mediaType"]
    assert isinstance(parse_manifest(json.dumps(idx).encode(), DOCKER_LIST), Index)


def test_index_selects_platform_and_ignores_attestations():
    for media_type in (OCI_INDEX, DOCKER_LIST):
        index = parse_manifest(json.dumps(index_doc(media_type)).encode())
        assert index.select(Platform("linux", "arm64", "v8")).digest == Digest.of_bytes(b"arm")
        assert index.select(Platform("linux", "amd64")).digest == Digest.of_bytes(b"amd")
        assert len(list(index.runnable_entries())) == 2
        with pytest.raises(NotFound, match="available: linux/amd64, linux/arm64/v8"):
            index.select(Platform("linux", "s390x"))


def test_schema1_refused_with_a_reason():
    doc = {"schemaVersion": 1, "name": "x", "tag": "y", "fsLayers": []}
    with pytest.raises(UnsupportedImage) as info:
        parse_manifest(json.dumps(doc).encode())
    assert "schema 1" in str(info.value) and info.value.hint


@pytest.mark.parametrize(
    "data, words",
    [
        (b"not json", "not valid JSON"),
        (b"[]", "not a JSON object"),
        (json.dumps({"schemaVersion": 2, "mediaType": "text/plain"}).encode(), "not an image manifest"),
        (json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {}, "layers": []}).encode(),
         "digest"),
        (b" " * (4 * 1024 * 1024 + 1), "limit"),
    ],
)
def test_malformed_manifests(data, words):
    with pytest.raises(UnsupportedImage, match=words):
        parse_manifest(data)


def test_foreign_layers_refused():
    doc = manifest_doc()
    doc["layers"][0]["mediaType"] = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
    with pytest.raises(UnsupportedImage, match="foreign"):
        parse_manifest(json.dumps(doc).encode())


def test_config_fields():
    config = parse_config(
        json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Entrypoint": ["/bin/jq"], "Cmd": None, "Env": ["PATH=/bin"], "WorkingDir": "/w",
                           "User": "1000"},
                "rootfs": {"type": "layers", "diff_ids": [str(Digest.of_bytes(b"t"))]},
            }
        ).encode()
    )
    assert config.entrypoint == ("/bin/jq",) and config.cmd is None
    assert config.env == ("PATH=/bin",) and config.working_dir == "/w" and config.user == "1000"
    assert config.platform == Platform("linux", "amd64")
    with pytest.raises(UnsupportedImage, match="diff_ids"):
        parse_config(b'{"rootfs": {}}')
