"""Fuzzing the files users and projects write: recipes, toolbox.toml and toolbox.lock. Whatever
they hold, loading gives a value or toolbox's own error with a message, never a crash.

A short run here; `python3 bench/fuzz.py` runs the same properties (and the reference, auth
and unpacker ones) for much longer (HYPOTHESIS_PROFILE=long)."""

import tomllib

import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from toolbox.errors import ToolboxError
from toolbox.project.lockfile import read_lock, render
from toolbox.project.project import edit_pins, load_project
from toolbox.project.recipes import KEYS, parse_recipe

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))
VALUES = st.recursive(SCALARS,
                      lambda inner: st.one_of(st.lists(inner, max_size=4),
                                              st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                      max_leaves=12)
TOML_VALUES = st.recursive(st.one_of(st.booleans(), st.integers(-2**63, 2**63 - 1), st.text(max_size=30)),
                           lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                   st.dictionaries(st.text(max_size=10), inner, max_size=4)),
                           max_leaves=12)
RECIPE_KEYS = st.sampled_from(sorted(KEYS) + ["colour", ""])


@given(st.dictionaries(RECIPE_KEYS, VALUES, max_size=8), st.text(max_size=20))
def test_any_recipe_table_loads_or_says_why(table, name):
    try:
        recipe = parse_recipe(name, table, "user", "/r.toml")
    except ToolboxError as err:
        assert err.message.startswith("/r.toml: recipe")
        return
    assert recipe.reference_for(recipe.default_version).startswith(recipe.image)


@given(st.dictionaries(st.sampled_from(["lock_version", "tools", "x"]), TOML_VALUES, max_size=3))
def test_any_lock_file_loads_or_says_why(tmp_path_factory, doc):
    path = tmp_path_factory.mktemp("lock") / "toolbox.lock"
    path.write_text(tomli_w.dumps(doc))
    try:
        lock = read_lock(str(path))
    except ToolboxError as err:
        assert str(path) in err.message
        return
    for _table, reason in lock.broken.values():  # an entry that does not load says why, and where
        assert str(path) in reason
    # what loads, writes back: broken entries as they were
    written = tomllib.loads(render(lock.entries, lock.broken).decode())
    assert (written["lock_version"] == 1
            and set(written.get("tools", {})) == set(lock.entries) | set(lock.broken))


@settings(suppress_health_check=list(HealthCheck))
@given(st.text(max_size=300))
def test_any_toolbox_toml_loads_or_says_why_and_edits_keep_it_valid(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("project") / "toolbox.toml"
    path.write_text(text)
    try:
        load_project(str(path))
    except ToolboxError as err:
        assert str(path) in err.message
        return
    edit_pins(str(path), {"jq": "1.7.1"})
    assert load_project(str(path)).versions["jq"] == "1.7.1"  # valid before, valid after


TOML_LINES = st.sampled_from(["", "# a comment", "[tools]", "[tools]  # pins", "[ tools ]", "[recipes.lint]",
                              'image = "ghcr.io/x/lint"', 'default_version = "1"', 'jq = "1.6"',
                              'jq = "1.6"  # old', '"jq" = "1.5"', 'node = "20"', 'python = "3.11"',
                              "[other]", "[tools.extra]", 'tools.jq = "1.2"', 'x = """', 'multi', '"""',
                              'yq = { version = "4" }', "jq=\"1.0\"", "\ttabbed = \"2\"",])


@given(st.lists(TOML_LINES, max_size=12), st.sampled_from(["\n", "\r\n"]))
def test_edits_of_realistic_toolbox_toml_keep_it_valid(tmp_path_factory, lines, newline):
    path = tmp_path_factory.mktemp("project") / "toolbox.toml"
    path.write_bytes(newline.join(lines).encode())
    try:
        before = load_project(str(path))
    except ToolboxError:
        return
    text = path.read_bytes()
    try:
        edit_pins(str(path), {"jq": "1.7.1", "python3.11": "x"})
    except ToolboxError as err:
        # Refused, not guessed at, only for pins written another way or lines inside a string.
        assert "cannot edit" in err.message and path.read_bytes() == text
        assert b"tools." in text or b'"""' in text, text
        return
    after = load_project(str(path))
    assert after.versions == dict(before.versions, jq="1.7.1", **{"python3.11": "x"})
    edit_pins(str(path), {}, remove=("jq",))
    assert load_project(str(path)).versions == {k: v for k, v in after.versions.items() if k != "jq"}
