import pytest


@pytest.fixture
def sandbox(tmp_path):
    """dest is the layer tree; canary sits beside it and must never change."""
    dest = tmp_path / "dest"
    dest.mkdir()
    canary = tmp_path / "canary"
    canary.mkdir()
    (canary / "keep").write_text("unchanged")
    return dest, canary
