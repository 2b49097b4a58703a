"""`toolbox load`: docker save archives and OCI layouts (directory or tar), offline."""

import json
import tarfile

import pytest

from tests.support import images
from toolbox.digest import Digest
from toolbox.errors import IntegrityError
from toolbox.load import load_images


def write_docker_save(path, built, tags):
    """The classic `docker save` format: manifest.json, the config, one uncompressed tar a layer."""
    tars = [images.layer_tar(_entries_of(built, i)) for i in range(len(built.diff_ids))]
    with tarfile.open(path, "w") as archive:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            import io

            archive.addfile(info, io.BytesIO(data))

        config_name = built.config_digest.split(":")[1] + ".json"
        add(config_name, built.config_bytes)
        layer_names = []
        for i, tar in enumerate(tars):
            name = f"layer{i}/layer.tar"
            add(name, tar)
            layer_names.append(name)
        add("manifest.json", json.dumps([{"Config": config_name, "RepoTags": tags, "Layers": layer_names}]).encode())


def _entries_of(built, index):
    return LAYERS[built.manifest_digest][index]


LAYERS = {}


def remembered(spec):
    built = images.build_image(spec)
    LAYERS[built.manifest_digest] = [tuple(layer.entries) for layer in spec.layers]
    return built


def test_docker_save_archive(toolbox, tmp_path):
    spec = images.busybox_spec(layers=(images.busybox_layer(), images.Layer((images.file("hello", "hi\n"),))))
    built = remembered(spec)
    archive = tmp_path / "saved.tar"
    write_docker_save(archive, built, ["example/tool:2"])
    result = toolbox.cli("load", str(archive))
    assert result.returncode == 0, result.stderr
    assert "docker.io/example/tool:2" in result.stdout
    record = toolbox.store.get("example/tool:2")
    image = toolbox.store.load_image(record)
    assert [str(d) for d in image.diff_ids] == list(built.diff_ids)
    tree = toolbox.layout.layer_tree(Digest.parse(built.diff_ids[1]))
    assert open(f"{tree}/hello").read() == "hi\n"
    assert toolbox.leftovers() == []


@pytest.mark.parametrize("as_tar", [False, True])
def test_oci_layout(toolbox, tmp_path, as_tar):
    built = images.whiteout_image()
    layout = tmp_path / "layout"
    images.write_oci_layout(layout, built, "v1")
    source = layout
    if as_tar:
        source = tmp_path / "layout.tar"
        with tarfile.open(source, "w") as archive:
            archive.add(layout, arcname=".")
    records = load_images(str(source), store=toolbox.store, name="localhost/whiteout:v1")
    assert [r.reference for r in records] == ["localhost/whiteout:v1"]
    assert str(records[0].digest) == built.manifest_digest
    for diff_id in built.diff_ids:
        assert toolbox.store.has_layer(Digest.parse(diff_id))


def test_damaged_archive_is_refused_and_nothing_kept(toolbox, tmp_path):
    built = images.busybox_image()
    layout = tmp_path / "layout"
    images.write_oci_layout(layout, built, "v1")
    layer = layout / "blobs" / "sha256" / built.layers[0]["digest"].split(":")[1]
    data = bytearray(layer.read_bytes())
    data[len(data) // 2] ^= 0xFF
    layer.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match="does not match"):
        load_images(str(layout), store=toolbox.store, name="localhost/damaged:1")
    assert toolbox.store.records() == []
    assert toolbox.layer_dirs() == []
    assert toolbox.leftovers() == []


def test_not_an_image(toolbox, tmp_path):
    (tmp_path / "junk").mkdir()
    result = toolbox.cli("load", str(tmp_path / "junk"))
    assert result.returncode == 125 and "neither" in result.stderr
