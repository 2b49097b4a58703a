"""`toolbox outdated`: the version rule (toolbox/versions.py), the registry's tag list page by
page, and the command against the recipes' stand-in upstream repositories."""

import json
from pathlib import Path

import pytest

from toolbox.oci.versions import is_newer, newest, parse_version, versions_in

from tests.support.faults import FaultProxy
from tests.support.installation import cli
from tests.support.upstream import multiarch, tool_image


# -- the rule ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("older, newer", [("3.9", "3.10"), ("3.12", "3.13"), ("1.7.1", "1.7.10"),
                                          ("1.7.9", "1.8.0"), ("3.13-rc1", "3.13"), ("3.13.0a1", "3.13.0b1"),
                                          ("3.13-beta2", "3.13-rc1"), ("3.13-rc1", "3.13-rc2"),
                                          ("3.13dev1", "3.13a1"), ("2.0.0-beta.2", "2.0.0"),
                                          ("v1.2", "v1.10"),])
def test_versions_compare_by_their_numbers_and_a_pre_release_before_its_release(older, newer):
    assert parse_version(older) < parse_version(newer)


@pytest.mark.parametrize("text",
                         ["latest", "3.12-slim", "22.04-bookworm", "1.7.1-r2", "3.12.x", "bookworm", ""])
def test_what_is_not_a_numbered_version_is_not_compared(text):
    assert parse_version(text) is None


def test_the_newest_version_keeps_the_pins_precision_and_skips_pre_releases_unless_pinned():
    tags = ["3", "3.11", "3.12", "3.13", "3.13.1", "3.14-rc1", "3.14.0a2", "latest", "3.12-bookworm"]
    assert newest("3.12", tags).text == "3.13"  # not 3.13.1, not 3, not 3.14-rc1
    assert newest("3.12.1", tags).text == "3.13.1"
    assert newest("3", tags).text == "3"
    assert newest("3.14-rc1", tags + ["3.14-rc2"]).text == "3.14-rc2"
    assert newest("3.14-rc1", tags + ["3.14-rc2", "3.14"]).text == "3.14"
    # the newest there is older
    assert newest("4.1.1", tags).text == "3.13.1" and not is_newer(newest("4.1.1", tags), "4.1.1")
    assert newest("latest", tags) is None and newest("1.2.3.4", tags) is None  # nothing to compare with
    assert versions_in("{version}-slim",
                       ["3.13-slim", "3.13-slim-bookworm", "latest", "3.14-rc1-slim", "slim"]) == \
        {"3.13": "3.13-slim", "3.14-rc1": "3.14-rc1-slim"}
    assert versions_in("v{version}", ["v1.2", "1.3", "v"]) == {"1.2": "v1.2"}
    assert versions_in("stable", ["stable"]) == {}


# -- the registry's list of tags ----------------------------------------------------------------------------
def test_tags_are_listed_page_after_page_as_the_link_header_leads(toolbox, registry):
    """docker-registry 2.8 answers tags/list in one page; Docker Hub, ghcr.io and quay.io page
    it. The proxy answers as they do: each page names the next in a Link header, the last
    names none, and a Link naming another host only gives the query (asked of the same
    endpoint), so our request and credentials go nowhere else."""
    from toolbox.oci.reference import ImageRef

    with FaultProxy(registry.url) as proxy:
        toolbox.trust(proxy)
        repository = "/v2/paged/tool/tags/list"
        page = lambda tags, link=None: dict(code=200,
                                            data=json.dumps({"name": "paged/tool", "tags": tags}).encode(),
                                            headers={"Content-Type": "application/json",
                                                     **({"Link": link} if link else {})})
        proxy.add(r"tags/list\?n=2$", "body",
                  **page(["1.0", "1.1"], f'<{repository}?last=1.1&n=2>; rel="next"'))
        proxy.add(r"last=1\.1&", "body",
                  **page(["1.2", "2.0"], f'<http://elsewhere.example{repository}?last=2.0&n=2>; rel="next"'))
        proxy.add(r"last=2\.0&", "body", **page(["2.1"]))
        client = toolbox.services().registry_client()
        try:
            tags = client.list_tags(ImageRef.parse(f"{proxy.host}/paged/tool:1.0"), page_size=2)
        finally:
            client.close()
    assert tags == ["1.0", "1.1", "1.2", "2.0", "2.1"]
    assert [path for _method, path, _range, _action in proxy.log] == [
        f"{repository}?n=2", f"{repository}?last=1.1&n=2", f"{repository}?last=2.0&n=2"]


def test_a_registry_that_pages_in_a_circle_ends_the_list(toolbox, registry):
    from toolbox.oci.reference import ImageRef

    with FaultProxy(registry.url) as proxy:
        toolbox.trust(proxy)
        body = json.dumps({"name": "circle/tool", "tags": ["1"]}).encode()
        proxy.add(r"tags/list", "body", times=10, code=200, data=body,
                  headers={"Link": '</v2/circle/tool/tags/list?last=1>; rel="next"'})
        client = toolbox.services().registry_client()
        try:
            assert client.list_tags(ImageRef.parse(f"{proxy.host}/circle/tool:1")) == ["1"]
        finally:
            client.close()
    assert len(proxy.log) == 2


# -- the command -------------------------------------------------------------------------------------------
def test_outdated_says_what_is_locked_what_is_newer_and_which_tag_moved(toolbox, upstream, tmp_path):
    for version in ("3.11", "3.12", "3.13", "3.13.1", "3.14-rc1"):
        upstream.publish("docker.io/library/python", f"{version}-slim",
                         tool_image(f"py-{version}", "/usr/local/bin/python"))
    upstream.publish("docker.io/library/python", "3.15-slim-bookworm",
                     tool_image("py-other", "/usr/local/bin/python"))
    upstream.publish("docker.io/library/python", "latest", tool_image("py-latest", "/usr/local/bin/python"))
    for version in ("1.6", "1.7.1", "1.7.2", "1.8.0rc1"):
        upstream.publish("ghcr.io/jqlang/jq", version, multiarch(f"jq-{version}"))
    yq = upstream.publish("docker.io/mikefarah/yq", "4.44.3", tool_image("yq"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\npython = "3.12"\nyq = "4.44.3"\n')
    assert cli(toolbox, "lock", cwd=project).returncode == 0
    lock_before = (project / "toolbox.lock").read_bytes()
    locked = {tool: entry["digest"]
              for tool, entry in __import__("tomllib").loads(lock_before.decode())["tools"].items()}
    moved = upstream.publish("ghcr.io/jqlang/jq", "1.7.1", multiarch("jq-1.7.1-rebuilt"))
    result = cli(toolbox, "outdated", "--json", cwd=project)
    assert result.returncode == 0, result.stderr
    rows = {row["tool"]: row for row in json.loads(result.stdout)}
    assert {tool: (r["version"], r["locked_digest"], r["newest"], r["newer"], r["tag_digest"],
                   r["tag_moved"]) for tool, r in rows.items()} == {
        "jq": ("1.7.1", locked["jq"], "1.7.2", True, moved, True),
        "python": ("3.12", locked["python"], "3.13", True, locked["python"], False),
        "yq": ("4.44.3", yq, "4.44.3", False, yq, False)}
    assert all(r["problem"] is None and r["note"] is None for r in rows.values())
    assert (rows["python"]["tag"] == "3.12-slim"
            and rows["python"]["pinned_by"] == str(project / "toolbox.toml"))
    table = cli(toolbox, "outdated", cwd=project)
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["TOOL", "PINNED", "LOCKED", "NEWEST", "TAG", "UPSTREAM"]
    assert lines[1].split() == ["jq", "1.7.1", locked["jq"][7:19], "1.7.2", "(newer)", "moved", "(now",
                                f"{moved[7:19]})"]
    assert lines[2].split() == ["python", "3.12", locked["python"][7:19], "3.13", "(newer)", "unchanged"]
    assert lines[3].split() == ["yq", "4.44.3", yq[7:19], "4.44.3", "unchanged"]
    assert "jq: 1.7.2 is out: `toolbox add jq@1.7.2` pins it" in lines
    assert ("jq: the tag 1.7.1 moved upstream: `toolbox lock --upgrade jq` takes it (review the change)"
            in lines)
    assert (project / "toolbox.lock").read_bytes() == lock_before  # nothing written
    only = json.loads(cli(toolbox, "outdated", "python", "--json", cwd=project).stdout)
    assert [row["tool"] for row in only] == ["python"]
    # A pin changed since the lock: said, and still compared.
    (project / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\npython = "3.11"\nyq = "4.44.3"\n')
    python = [r for r in json.loads(cli(toolbox, "outdated", "--json", cwd=project).stdout)
              if r["tool"] == "python"][0]
    assert (python["locked_digest"] is None and python["newest"] == "3.13"
            and "locked for 3.12, pinned 3.11" in python["note"])


def test_outdated_without_a_registry_says_so_for_each_tool_and_reports_the_others(toolbox, upstream,
                                                                                  tmp_path):
    upstream.publish("ghcr.io/jqlang/jq", "1.7.1", tool_image("jq-1.7.1"))
    recipes = Path(toolbox.layout.user_recipes_dir)
    recipes.mkdir(parents=True)
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    (recipes / "gone.toml").write_text('image = "127.0.0.1:1/gone/tool"\ndefault_version = "1.0"\n')
    project = tmp_path / "project"
    project.mkdir()
    (project / "toolbox.toml").write_text('[tools]\ngone = "1.0"\njq = "1.7.1"\n')
    result = cli(toolbox, "outdated", cwd=project)
    assert result.returncode == 125 and "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert lines[1].split() == ["gone", "1.0", "not", "locked", "?", "?"]
    assert lines[2].split()[:4] == ["jq", "1.7.1", "not", "locked"] and lines[2].split()[4] == "1.7.1"
    assert ("toolbox: warning: gone: cannot list the tags of 127.0.0.1:1/gone/tool: "
            "cannot reach 127.0.0.1:1: connection refused" in result.stderr)
    assert "toolbox: error: could not check gone (1 of 2 pinned tools)" in result.stderr
    rows = json.loads(cli(toolbox, "outdated", "--json", cwd=project).stdout)
    assert [r["tool"] for r in rows if r["problem"]] == ["gone"] and rows[1]["newest"] == "1.7.1"
