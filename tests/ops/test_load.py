"""`toolbox load`: docker save archives and OCI layouts (directory or tar), offline."""

import json
import os
import tarfile

import pytest

from toolbox.errors import IntegrityError
from toolbox.oci.digest import Digest
from toolbox.ops.load import load_images

from tests.support import images


def write_docker_save(path, built, tags, edit=None):
    """The classic `docker save` format: manifest.json, the config, one uncompressed tar a layer.
    `edit(entries)` returns what manifest.json holds instead of `entries` (damaged archives)."""
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
        entries = [{"Config": config_name, "RepoTags": tags, "Layers": layer_names}]
        add("manifest.json", json.dumps(edit(entries) if edit else entries).encode())


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


# -- damaged archives ------------------------------------------------------------------------------


def small_image(text="damaged\n"):
    return remembered(images.ImageSpec(layers=(images.Layer((images.file("hello", text),)),),
                                       cmd=("/hello",)))


def docker_save(tmp_path, edit=None, extract=False):
    archive = tmp_path / "saved.tar"
    write_docker_save(archive, small_image(), ["example/damaged:1"], edit)
    if not extract:
        return archive
    directory = tmp_path / "saved"
    with tarfile.open(archive) as tar:
        tar.extractall(directory)
    return directory


def oci_layout(tmp_path, damage):
    built = small_image()
    layout = tmp_path / "layout"
    images.write_oci_layout(layout, built, "v1")
    damage(layout, built)
    return layout


def truncated(tmp_path):
    """Cut off in the middle of the layer, as by a full disk or a broken copy."""
    archive = docker_save(tmp_path)
    with tarfile.open(archive) as tar:
        layer = tar.getmember("layer0/layer.tar")
    with open(archive, "r+b") as file:
        file.truncate(layer.offset_data + layer.size // 2)
    return archive


def blob(layout, digest):
    return layout / "blobs" / "sha256" / digest.split(":")[1]


def rewrite_index(document):
    def damage(layout, _built):
        (layout / "index.json").write_text(document if isinstance(document, str) else json.dumps(document))
    return damage


def remove_layer_blob(layout, built):
    blob(layout, built.layers[0]["digest"]).unlink()


def remove_manifest_blob(layout, built):
    blob(layout, built.manifest_digest).unlink()


def fifo_for_layer_blob(layout, built):
    path = blob(layout, built.layers[0]["digest"])
    path.unlink()
    os.mkfifo(path)  # would block an open() for reading forever


def layer_blob_linked_out(layout, built):
    path = blob(layout, built.layers[0]["digest"])
    path.unlink()
    path.symlink_to("/etc/passwd")


DAMAGED = {
    "layer blob a FIFO": (lambda t: oci_layout(t, fifo_for_layer_blob), "has no blobs/sha256/"),
    "layer blob a symlink out of the layout": (lambda t: oci_layout(t, layer_blob_linked_out),
                                               "points outside"),
    "truncated tar": (truncated, "is truncated"),
    "index.json not JSON": (lambda t: oci_layout(t, rewrite_index("{\"manifests\": [")),
                            "index.json is not valid JSON"),
    "index.json without manifests": (lambda t: oci_layout(t, rewrite_index({"schemaVersion": 2})),
                                     "no 'manifests' list"),
    "index.json digest not a string": (
        lambda t: oci_layout(t, rewrite_index({"schemaVersion": 2,
                                               "manifests": [{"digest": 12, "size": 3}]})),
        "no digest"),
    "manifest blob missing": (lambda t: oci_layout(t, remove_manifest_blob), "has no blobs/sha256/"),
    "layer blob missing": (lambda t: oci_layout(t, remove_layer_blob), "has no blobs/sha256/"),
    "manifest.json entry not an object": (lambda t: docker_save(t, lambda e: ["saved.tar"]),
                                          "entry 1 is not a JSON object"),
    "manifest.json without Config": (lambda t: docker_save(t, lambda e: [{"Layers": e[0]["Layers"]}]),
                                     "'Config' must be"),
    "manifest.json Config a number": (lambda t: docker_save(t, lambda e: [dict(e[0], Config=7)]),
                                      "'Config' must be"),
    "manifest.json Layers a string": (
        lambda t: docker_save(t, lambda e: [dict(e[0], Layers="layer0/layer.tar")]), "'Layers' must be"),
    "manifest.json Layers with a NUL": (lambda t: docker_save(t, lambda e: [dict(e[0], Layers=["layer0\0"])],
                                                              extract=True),
                                        "'Layers' must be"),
    "manifest.json RepoTags a string": (lambda t: docker_save(t, lambda e: [dict(e[0], RepoTags="a:1")]),
                                        "'RepoTags' must be"),
    "layer file missing": (lambda t: docker_save(t, lambda e: [dict(e[0], Layers=["gone/layer.tar"])],
                                                 extract=True),
                           "has no gone/layer.tar"),
}


@pytest.fixture
def store_with_an_image(toolbox):
    layout = toolbox.root / "good"
    images.write_oci_layout(layout, small_image("good\n"), "v1")
    load_images(str(layout), store=toolbox.store, name="localhost/good:1")
    return toolbox


def store_files(toolbox):
    root = toolbox.layout.store_dir
    return sorted(os.path.relpath(os.path.join(d, name), root) for d, _dirs,
                  files in os.walk(root) for name in files)


@pytest.mark.parametrize("case", DAMAGED)
def test_a_damaged_archive_is_a_clear_error_and_changes_nothing(store_with_an_image, tmp_path, case):
    toolbox = store_with_an_image
    make, words = DAMAGED[case]
    before = store_files(toolbox)
    result = toolbox.cli("load", str(make(tmp_path)))
    assert result.returncode == 125, result.stderr
    assert "Traceback" not in result.stderr and "toolbox: error:" in result.stderr
    assert words in result.stderr
    assert store_files(toolbox) == before
