import io

from toolbox.oci.digest import Digest
from toolbox.oci.manifest import Descriptor
from toolbox.ops.progress import PlainProgress, TerminalProgress, human_bytes, progress_for
from toolbox.ops.pull import LayerPlan, NullProgress


def plans():
    return [
        LayerPlan(Descriptor("application/vnd.oci.image.layer.v1.tar+gzip", Digest.of_bytes(bytes([i])),
                             2_000_000), Digest.of_bytes(bytes([i, i])), i == 0)
        for i in range(3)
    ]


def test_terminal_progress_redraws_layer_lines_in_place():
    out = io.StringIO()
    progress = TerminalProgress(out)
    layers = plans()
    progress.resolved("docker.io/library/x:1", Digest.of_bytes(b"m"), "linux/amd64", layers)
    progress.layer_advanced(layers[1], 1_000_000)
    progress.layer_done(layers[1], None)
    text = out.getvalue()
    # stored: not shown
    assert layers[1].descriptor.digest.short in text and layers[0].descriptor.digest.short not in text
    assert "0 B / 2.0 MB" in text and "done" in text and "total" in text
    # Two frames: the first, and the forced one at "done"; the advance in between came within
    # 0.1 s of a frame and was not drawn (at most ten redraws a second).
    assert text.count("total") == 2 and "1.0 MB / 2.0 MB" not in text
    assert "\x1b[F" * 3 in text  # the second frame moved the cursor back over the first


def test_plain_progress_for_pipes_and_quiet_prints_nothing():
    out = io.StringIO()
    progress = PlainProgress(out)
    layers = plans()
    progress.resolved("r", Digest.of_bytes(b"m"), "linux/amd64", layers)
    progress.layer_done(layers[2], None)
    lines = out.getvalue().splitlines()
    assert lines[1] == "3 layers, 1 already stored, 4.0 MB to download"
    assert "\x1b" not in out.getvalue()
    assert isinstance(progress_for(quiet=True, stream=out), NullProgress)
    assert isinstance(progress_for(quiet=False, stream=out), PlainProgress)


def test_human_bytes():
    assert [human_bytes(n) for n in (5, 1500, 2_500_000, 3 * 10**9)] == ["5 B", "1.5 kB", "2.5 MB", "3.0 GB"]
