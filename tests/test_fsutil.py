"""Removing and measuring trees that layers can make: deeper than Python's recursion limit, with
directories the owner cannot read, write or search, and symlinks that must not be followed."""

import os
import sys

import pytest

from toolbox import fsutil

from tests.support.trees import DEPTH, make_deep_tree


@pytest.fixture
def canary(tmp_path):
    outside = tmp_path / "canary"
    outside.mkdir()
    (outside / "keep").write_text("unchanged")
    return outside


def test_a_tree_deeper_than_the_recursion_limit_is_measured_and_removed(deep_tmp_path, canary):
    assert DEPTH > sys.getrecursionlimit()
    top = deep_tmp_path / "deep"
    make_deep_tree(top, outside=canary)
    assert fsutil.disk_usage(top) >= 12 * 5000  # all twelve files, the deepest too
    fsutil.remove_tree(top)
    assert not os.path.lexists(top)
    assert [p.name for p in canary.iterdir()] == ["keep"] and (canary / "keep").read_text() == "unchanged"


def test_directories_without_owner_bits_are_removed_too(deep_tmp_path, canary):
    top = deep_tmp_path / "stripped"
    make_deep_tree(top, outside=canary, strip=True)
    os.chmod(top, 0o500)
    fsutil.remove_tree(top)
    assert not os.path.lexists(top)
    assert [p.name for p in canary.iterdir()] == ["keep"] and (canary / "keep").read_text() == "unchanged"


def test_directories_that_cannot_be_searched_are_not_counted_and_do_not_stop_the_count(deep_tmp_path):
    """du(1) skips what it may not enter; a directory that can be listed but not searched
    (rw-) could be entered, but not left through `..`."""
    top = deep_tmp_path / "modes"
    make_deep_tree(top, strip=True)
    assert fsutil.disk_usage(top) >= 5000  # at least the file at the top level was counted
    assert fsutil.tree_summary(top)[1] > 0
    fsutil.remove_tree(top)


def test_remove_tree_at_a_symlink_removes_the_link_only(tmp_path, canary):
    (tmp_path / "link").symlink_to(canary)
    fsutil.remove_tree(tmp_path / "link")
    assert not os.path.lexists(tmp_path / "link") and (canary / "keep").exists()
    assert fsutil.disk_usage(tmp_path / "missing") == 0


def test_hard_links_are_counted_once(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a").write_bytes(b"x" * 100_000)
    os.link(tmp_path / "t" / "a", tmp_path / "t" / "b")
    once = fsutil.disk_usage(tmp_path / "t")
    assert 100_000 <= once < 200_000
