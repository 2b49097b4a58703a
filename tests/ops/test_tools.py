"""Tools by name: the built-in recipes, toolbox.toml pins, toolbox.lock and trust.

The real recipe files are what is tested: their upstream images (ghcr.io/jqlang/jq,
docker.io/library/python, ...) are served by the loopback registry through the mirror config,
under a prefix of each test's own, where the tests publish small busybox images that stand in for
the tools (a script that prints which image and version it is, and its arguments).
"""

import json
import os
import subprocess
from pathlib import Path

import pytest

from toolbox.errors import ConfigError, RecipeError
from toolbox.layout import Layout
from toolbox.project.catalog import Catalog, builtin_dir, load_directory
from toolbox.project.recipes import parse_recipe

from tests.support import images
from tests.support.host import userns_overlay_works
from tests.support.installation import cli
from tests.support.upstream import Upstream, multiarch, tool_image

REQUIRED = ("jq", "yq", "psql", "node", "python", "aws", "gcloud", "busybox", "redis-cli", "ubuntu", "debian",
            "alpine")


def run(toolbox, *args, cwd, env=None):
    return cli(toolbox, "run", *args, cwd=cwd, env=env)


# -- recipes --------------------------------------------------------------------------------------
def test_every_builtin_recipe_loads_and_points_at_its_upstream_image():
    recipes = load_directory(builtin_dir(), "builtin")
    assert set(REQUIRED) <= set(recipes)
    assert recipes["jq"].image == "ghcr.io/jqlang/jq" and recipes["yq"].image == "docker.io/mikefarah/yq"
    assert (recipes["psql"].image == "docker.io/library/postgres" and recipes["psql"].command == ("psql",)
            and "PG*" in recipes["psql"].pass_env)
    assert recipes["aws"].image == "docker.io/amazon/aws-cli" and recipes["aws"].mounts[0].read_only
    assert recipes["node"].tty and recipes["python"].command == ("python",)
    assert {f"python3.{minor}" for minor in (10, 11, 12, 13)} <= set(recipes["python"].aliases)
    assert recipes["python"].aliases["python3.11"].version == "3.11"
    assert recipes["busybox"].aliases["base64"].command == ("base64",) and "sed" in recipes["busybox"].aliases
    for recipe in recipes.values():
        assert recipe.reference_for(recipe.default_version).startswith(recipe.image + ":")
        assert recipe.source == "builtin" and recipe.origin.endswith(f"{recipe.name}.toml")


@pytest.mark.parametrize("table, complaint", [
    ({"default_version": "1"}, "missing 'image'"),
    ({"image": "ghcr.io/a/b", "default_version": "1", "colour": "red"}, "unknown key 'colour'"),
    ({"image": "ghcr.io/a/b:1", "default_version": "1"}, "without tag or digest"),
    ({"image": "ghcr.io/a/b", "default_version": "1 2"}, "is not a version"),
    ({"image": "ghcr.io/a/b", "default_version": "1", "command": "jq"}, "'command' must be a non-empty list"),
    ({"image": "ghcr.io/a/b", "default_version": "1", "default_command": []},
     "'default_command' must be a non-empty list"),
    ({"image": "ghcr.io/a/b", "default_version": "1", "network": "bridge"},
     "'network' must be one of host, none"),
    ({"image": "ghcr.io/a/b", "default_version": "1", "pass_env": ["*"]}, "PREFIX* pattern"),
    ({"image": "ghcr.io/a/b", "default_version": "1", "mounts": [{"source": "/", "target": "/x"}]},
     "without '..'"),
    ({"image": "ghcr.io/a/b", "default_version": "1", "mounts": [{"source": "rel", "target": "/x"}]},
     "must be an absolute path"),
    ({"image": "ghcr.io/a/b", "default_version": "1", "aliases": {"x": {"image": "y"}}},
     "alias 'x' must be a table"),
    ({"image": "ghcr.io/a/b", "default_version": "1", "tag": "v{version}!"}, "do not make a valid reference"),
])
def test_a_broken_recipe_names_the_file_the_key_and_what_is_allowed(table, complaint):
    with pytest.raises(RecipeError) as caught:
        parse_recipe("mytool", table, "user", "/cfg/recipes/mytool.toml")
    assert ("/cfg/recipes/mytool.toml: recipe 'mytool'" in caught.value.message
            and complaint in caught.value.message)


def test_user_recipes_override_builtins_and_projects_override_both(tmp_path):
    layout = Layout.under(tmp_path / "tb")
    os.makedirs(layout.user_recipes_dir)
    Path(layout.user_recipes_dir, "jq.toml").write_text('image = "ghcr.io/me/jq"\ndefault_version = "9"\n')
    Path(layout.user_recipes_dir, "mine.toml").write_text('image = "ghcr.io/me/mine"\n'
                                                          'default_version = "1"\n')
    catalog = Catalog.load(layout)
    assert catalog.find("jq")[0].image == "ghcr.io/me/jq" and catalog.find("jq")[0].source == "user"
    assert catalog.shadowed("jq").source == "builtin"
    project = tmp_path / "p"
    project.mkdir()
    (project / "toolbox.toml").write_text('[recipes.jq]\nimage = "ghcr.io/project/jq"\ndefault_version = '
                                          '"8"\n')
    from toolbox.project.project import load_project

    catalog = Catalog.load(layout, load_project(str(project / "toolbox.toml")))
    assert catalog.find("jq")[0].source == "project" and catalog.shadowed("jq").source == "user"
    assert catalog.find("python3.11")[0].name == "python" and catalog.find("python3.11")[1].version == "3.11"
    Path(layout.user_recipes_dir, "broken.toml").write_text("image = [")
    catalog = Catalog.load(layout)  # a file that is not TOML stops only its own name
    assert catalog.find("mine")[0].source == "user" and "broken" not in catalog.recipes
    with pytest.raises(RecipeError, match="broken.toml: not valid TOML"):
        catalog.find("broken")


def test_recipes_commands_and_unknown_tools(toolbox, tmp_path):
    listed = json.loads(cli(toolbox, "recipes", "list", "--json", cwd=tmp_path).stdout)
    assert set(REQUIRED) <= {r["name"] for r in listed}
    shown = cli(toolbox, "recipes", "show", "python3.11", cwd=tmp_path)
    assert ("alias of python, version 3.11" in shown.stdout
            and "docker.io/library/python:{version}-slim" in shown.stdout)
    assert "psql" in cli(toolbox, "recipes", "search", "sql", cwd=tmp_path).stdout
    shell = cli(toolbox, "recipes", "show", "ubuntu", cwd=tmp_path).stdout
    assert ("command:  bash without arguments, else ARGUMENTS..." in shell
            and "without arguments, command bash" in shell)
    unknown = run(toolbox, "jqq", ".", cwd=tmp_path)
    assert (unknown.returncode == 125 and "no recipe for 'jqq'" in unknown.stderr
            and "did you mean jq" in unknown.stderr)


def test_a_pin_without_a_recipe_is_named_with_the_file_that_pins_it(toolbox, tmp_path):
    """`toolbox add jq@9.9` where the project already pins a misspelt jqq: the complaint is
    about jqq, so it says which file pins it and how to get rid of it; nothing changes."""
    project = tmp_path / "project"
    project.mkdir()
    pins = project / "toolbox.toml"
    pins.write_text('[tools]\njqq = "1.7.1"\n')
    for args in (("add", "jq@9.9"), ("lock",), ("sync",)):
        result = cli(toolbox, *args, cwd=project)
        assert result.returncode == 125, result.stderr
        error, hint = result.stderr.splitlines()
        assert error == f"toolbox: error: no recipe for 'jqq', which {pins} pins", result.stderr
        assert "did you mean jq?" in hint and "`toolbox remove jqq`" in hint
    assert pins.read_text() == '[tools]\njqq = "1.7.1"\n' and sorted(os.listdir(project)) == ["toolbox.toml"]
    # Outside any project, the global pins: the file is config.toml, the way out --global.
    config = Path(toolbox.layout.config_file)
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text('[tools]\njqq = "1.7.1"\n')
    result = cli(toolbox, "lock", cwd=tmp_path)
    assert (f"no recipe for 'jqq', which {config} pins" in result.stderr
            and "`toolbox remove --global jqq`" in result.stderr)


# -- pins and the lock -----------------------------------------------------------------------------
def test_walk_up_finds_the_project_and_global_pins_apply_outside(toolbox, tmp_path):
    from toolbox.project.config import UserConfig
    from toolbox.project.project import current_pins, find_project_file

    project = tmp_path / "project"
    (project / "src" / "deep").mkdir(parents=True)
    (project / "toolbox.toml").write_text('[tools]\njq = "1.6"\n')
    assert find_project_file(str(project / "src" / "deep")) == str(project / "toolbox.toml")
    config = UserConfig(None, {}, {"jq": "1.7"})
    assert current_pins(toolbox.layout, str(project / "src" / "deep"), config).versions == {"jq": "1.6"}
    outside = current_pins(toolbox.layout, str(tmp_path), config)
    assert outside.versions == {"jq": "1.7"} and not outside.is_project


def test_add_keeps_comments_and_lock_is_deterministic_until_upgrade(toolbox, upstream, tmp_path):
    first = upstream.publish("ghcr.io/jqlang/jq", "1.7.1", multiarch("jq-1.7.1-a"))
    upstream.publish("docker.io/library/python", "3.11-slim",
                     tool_image("python-3.11", "/usr/local/bin/python"))
    project = tmp_path / "project"
    project.mkdir()
    original = ('# our tools\n[tools]\n# JSON\njq = "1.6"   # old\n\n[recipes.other]  # ours\n'
                'image = "ghcr.io/x/y"\ndefault_version = "1"\n')
    (project / "toolbox.toml").write_text(original)
    added = cli(toolbox, "add", "jq@1.7.1", "python3.11", cwd=project)
    assert added.returncode == 0, added.stderr
    text = (project / "toolbox.toml").read_text()
    assert text == ('# our tools\n[tools]\n# JSON\njq = "1.7.1"  # old\npython = "3.11"\n\n'
                    '[recipes.other]  # ours\nimage = "ghcr.io/x/y"\ndefault_version = "1"\n')
    lock_bytes = (project / "toolbox.lock").read_bytes()
    import tomllib

    lock = tomllib.loads(lock_bytes.decode())
    jq = lock["tools"]["jq"]
    assert jq["digest"] == first and jq["tag"] == "1.7.1" and set(jq["platforms"]) == {"linux/amd64",
                                                                                       "linux/arm64/v8"}
    assert lock["tools"]["python"]["platforms"] == {"linux/amd64": lock["tools"]["python"]["digest"]}
    assert cli(toolbox, "lock", cwd=project).returncode == 0
    assert (project / "toolbox.lock").read_bytes() == lock_bytes  # twice: the same bytes
    os.unlink(project / "toolbox.lock")
    assert (cli(toolbox, "lock", cwd=project).returncode == 0
            and (project / "toolbox.lock").read_bytes() == lock_bytes)
    # The tag moves upstream: nothing changes until --upgrade.
    moved = upstream.publish("ghcr.io/jqlang/jq", "1.7.1", multiarch("jq-1.7.1-b"))
    assert (cli(toolbox, "lock", cwd=project).returncode == 0
            and (project / "toolbox.lock").read_bytes() == lock_bytes)
    listed = json.loads(cli(toolbox, "list", "--json", cwd=project).stdout)
    assert [(r["tool"], r["version"], r["digest"]) for r in listed] == [
        ("jq", "1.7.1", first), ("python", "3.11", lock["tools"]["python"]["digest"])]
    assert listed[0]["pinned_by"] == str(project / "toolbox.toml")
    upgraded = cli(toolbox, "lock", "--upgrade", "jq", cwd=project)
    assert upgraded.returncode == 0, upgraded.stderr
    assert tomllib.loads((project / "toolbox.lock").read_text())["tools"]["jq"]["digest"] == moved
    removed = cli(toolbox, "remove", "python", cwd=project)
    assert removed.returncode == 0 and "python" not in (project / "toolbox.toml").read_text()
    assert set(tomllib.loads((project / "toolbox.lock").read_text())["tools"]) == {"jq"}


def test_bad_pins_fail_cleanly_and_leave_the_files_as_they_were(toolbox, upstream, tmp_path):
    upstream.publish("ghcr.io/jqlang/jq", "1.7.1", tool_image("jq-1.7.1"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\n')
    assert cli(toolbox, "lock", cwd=project).returncode == 0
    toml_before, lock_before = ((project / "toolbox.toml").read_bytes(),
                                (project / "toolbox.lock").read_bytes())
    unknown_version = cli(toolbox, "add", "jq@9.9.9", cwd=project)
    assert unknown_version.returncode == 125 and "jq 9.9.9" in unknown_version.stderr, unknown_version.stderr
    unknown_tool = cli(toolbox, "add", "jqq", cwd=project)
    assert unknown_tool.returncode == 125 and "did you mean jq" in unknown_tool.stderr
    assert ((project / "toolbox.toml").read_bytes() == toml_before
            and (project / "toolbox.lock").read_bytes() == lock_before)
    assert sorted(os.listdir(project)) == ["toolbox.lock", "toolbox.toml"]  # no temp files left
    (project / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\nnosuch = "1"\n')
    no_recipe = cli(toolbox, "lock", cwd=project)
    assert no_recipe.returncode == 125 and "no recipe for 'nosuch'" in no_recipe.stderr
    (project / "toolbox.toml").write_text('[tools]\njq = 1.7\n')
    malformed = cli(toolbox, "list", cwd=project)
    assert (malformed.returncode == 125 and "toolbox.toml" in malformed.stderr
            and "a version is a string" in malformed.stderr)
    (project / "toolbox.toml").write_text('[tools\n')
    assert "not valid TOML" in cli(toolbox, "list", cwd=project).stderr
    (project / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\n')
    (project / "toolbox.lock").write_text('lock_version = 1\n[tools.jq]\nrecipe = "jq"\n')
    broken_lock = cli(toolbox, "lock", "--frozen", cwd=project)
    assert (broken_lock.returncode == 125 and "toolbox.lock" in broken_lock.stderr
            and "toolbox lock" in broken_lock.stderr)


def test_frozen_and_ci_refuse_to_resolve(toolbox, upstream, tmp_path):
    upstream.publish("ghcr.io/jqlang/jq", "1.7.1", tool_image("jq-1.7.1"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\n')
    frozen = cli(toolbox, "lock", "--frozen", cwd=project)
    assert frozen.returncode == 125 and "jq is pinned but not locked" in frozen.stderr
    in_ci = cli(toolbox, "sync", cwd=project, env={"CI": "true"})
    assert (in_ci.returncode == 125 and "does not match" in in_ci.stderr
            and not (project / "toolbox.lock").exists())
    synced = cli(toolbox, "sync", cwd=project)
    assert synced.returncode == 0, synced.stderr
    assert cli(toolbox, "sync", cwd=project, env={"CI": "true"}).returncode == 0  # matching now
    (project / "toolbox.toml").write_text('[tools]\njq = "1.6"\n')
    stale = cli(toolbox, "lock", "--frozen", cwd=project)
    assert stale.returncode == 125 and "jq: pinned 1.6" in stale.stderr


def test_no_manifest_for_this_platform(toolbox, upstream, tmp_path):
    upstream.publish("ghcr.io/jqlang/jq", "1.7.1",
                     images.build_index([tool_image("arm", architecture="arm64", variant="v8")]))
    project = tmp_path / "project"
    project.mkdir()
    (project / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\n')
    result = run(toolbox, "jq", cwd=project)
    assert result.returncode == 125 and "has no manifest for linux/amd64" in result.stderr, result.stderr


# -- running tools ---------------------------------------------------------------------------------
@pytest.mark.needs_userns_overlay
def test_sibling_projects_run_their_own_pinned_versions(toolbox, upstream, tmp_path):
    for version in ("1.6", "1.7.1"):
        upstream.publish("ghcr.io/jqlang/jq", version, tool_image(f"jq-{version}"))
    for name, version in (("a", "1.6"), ("b", "1.7.1")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "toolbox.toml").write_text(f'[tools]\njq = "{version}"\n')
    a = run(toolbox, "jq", ".name", "package.json", cwd=tmp_path / "a")
    b = run(toolbox, "jq", "-r", ".x", cwd=tmp_path / "b")
    assert (a.returncode, a.stdout) == (0, "jq-1.6 tool:.name package.json\n"), a.stderr
    assert b.stdout == "jq-1.7.1 tool:-r .x\n", b.stderr
    assert (tmp_path / "a" / "toolbox.lock").exists()  # the first run locked the pins
    # An explicit version runs by tag; outside any project the recipe's default version.
    assert run(toolbox, "jq@1.6", cwd=tmp_path / "b").stdout == "jq-1.6 tool:\n"
    assert run(toolbox, "jq", cwd=tmp_path).stdout == "jq-1.7.1 tool:\n"


@pytest.mark.needs_userns_overlay
def test_a_pin_that_does_not_resolve_stops_only_its_own_tool(toolbox, upstream, tmp_path):
    upstream.publish("ghcr.io/jqlang/jq", "1.7.1", tool_image("jq-1.7.1"))
    (tmp_path / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\nnode = "99"\n')
    assert run(toolbox, "jq", cwd=tmp_path).stdout == "jq-1.7.1 tool:\n"
    import tomllib

    assert set(tomllib.loads((tmp_path / "toolbox.lock").read_text())["tools"]) == {"jq"}
    # jq's entry matches: nothing to resolve
    assert run(toolbox, "jq", cwd=tmp_path, env={"CI": "true"}).returncode == 0
    node = run(toolbox, "node", cwd=tmp_path)
    assert node.returncode == 125 and "node 99" in node.stderr
    assert cli(toolbox, "lock", cwd=tmp_path).returncode == 125  # `toolbox lock` wants every pin
    frozen = cli(toolbox, "lock", "--frozen", cwd=tmp_path)
    assert frozen.returncode == 125 and "node is pinned but not locked" in frozen.stderr


@pytest.mark.needs_userns_overlay
def test_a_locked_run_stays_on_its_digest_when_the_tag_moves(toolbox, upstream, tmp_path):
    upstream.publish("ghcr.io/jqlang/jq", "1.7.1", tool_image("first"))
    (tmp_path / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\n')
    assert run(toolbox, "jq", cwd=tmp_path).stdout == "first tool:\n"
    upstream.publish("ghcr.io/jqlang/jq", "1.7.1", tool_image("second"))
    assert run(toolbox, "jq", cwd=tmp_path).stdout == "first tool:\n"
    # by digest, even then
    assert run(toolbox, "--pull", "always", "jq", cwd=tmp_path).stdout == "first tool:\n"
    assert cli(toolbox, "lock", "--upgrade", cwd=tmp_path).returncode == 0
    assert run(toolbox, "jq", cwd=tmp_path).stdout == "second tool:\n"


@pytest.mark.needs_userns_overlay
def test_aliases_commands_env_and_mounts_from_the_recipe(toolbox, upstream, tmp_path):
    upstream.publish("docker.io/library/python", "3.11-slim",
                     tool_image("python-3.11", "/usr/local/bin/python", names=("/usr/local/bin/pip",),
                                entrypoint=False))
    upstream.publish("docker.io/amazon/aws-cli", "2.17.0", tool_image("aws", "/usr/local/bin/aws"))
    assert (run(toolbox, "python3.11", "-c", "print(1)", cwd=tmp_path).stdout
            == "python-3.11 python:-c print(1)\n")
    # pip is python's default version, 3.12: not published
    assert run(toolbox, "pip", "install", "x", env={}, cwd=tmp_path).returncode == 125
    (tmp_path / "toolbox.toml").write_text('[tools]\npython = "3.11"\n')
    assert run(toolbox, "pip", "install", "x", cwd=tmp_path).stdout == "python-3.11 pip:install x\n"
    aws_dir = Path(toolbox.home) / ".aws"
    aws_dir.mkdir()
    (aws_dir / "config").write_text("[default]\n")
    script = "cat ~/.aws/config; echo $AWS_PROFILE-$OTHER; touch ~/.aws/x 2>/dev/null || echo read-only"
    result = run(toolbox, "--entrypoint", "sh", "aws", "-c", script, cwd=tmp_path,
                 env={"AWS_PROFILE": "dev", "OTHER": "no"})
    assert result.stdout == "[default]\ndev-\nread-only\n", result.stderr


# The recipes that are shells, and the shell each runs without arguments: with arguments, the
# arguments are the command, as `docker run ubuntu ls /` runs ls.
SHELL_RECIPES = {"ubuntu": "bash", "debian": "bash", "alpine": "sh"}


def _what_runs(recipe, alias):
    """(program, whether arguments replace it) for a recipe, or one of its aliases."""
    if recipe.name in SHELL_RECIPES and not (alias and alias.command):
        return SHELL_RECIPES[recipe.name], True
    command = alias.command if alias and alias.command else recipe.command
    return (command or (recipe.name,))[0], False


def _stand_in(recipe):
    """An image standing in for the recipe's upstream one: the programs it and its aliases
    name, at /usr/local/bin, printing the recipe's label and their arguments; where the recipe
    names no command, the image's entrypoint runs (as upstream images have it)."""
    programs = ([_what_runs(recipe, None)[0]]
                + [_what_runs(recipe, alias)[0] for alias in recipe.aliases.values()])
    programs = list(dict.fromkeys(programs))
    return tool_image(f"{recipe.name}-standin", f"/usr/local/bin/{programs[0]}",
                      names=[f"/usr/local/bin/{p}" for p in programs[1:]],
                      entrypoint=not (recipe.command or recipe.name in SHELL_RECIPES))


@pytest.mark.needs_userns_overlay
def test_every_builtin_recipe_and_alias_with_and_without_arguments(toolbox, upstream, tmp_path):
    """A tool gets the arguments; a shell recipe runs its shell without arguments, and the
    arguments as the command otherwise (`docker run ubuntu ls /`), also through its aliases."""
    recipes = load_directory(builtin_dir(), "builtin")
    for recipe in recipes.values():
        image = _stand_in(recipe)
        for version in {recipe.default_version} | {a.version for a in recipe.aliases.values() if a.version}:
            upstream.publish(recipe.image, recipe.tag_for(version), image)
    names = ([(recipe, None) for recipe in recipes.values()]
             + [(r, a) for r in recipes.values() for a in r.aliases.values()])
    for recipe, alias in names:
        name, label = alias.name if alias else recipe.name, f"{recipe.name}-standin"
        program, is_shell = _what_runs(recipe, alias)
        with_args = run(toolbox, name, "ls", "/", cwd=tmp_path)
        assert with_args.returncode == 0, (name, with_args.stderr)
        if is_shell:
            assert {"bin", "label", "usr"} <= set(with_args.stdout.split()), (name, with_args.stdout)
        else:
            assert with_args.stdout == f"{label} {program}:ls /\n", (name, with_args.stdout, with_args.stderr)
        without = run(toolbox, name, cwd=tmp_path)
        assert (without.returncode, without.stdout) == (0, f"{label} {program}:\n"), (name, without.stderr)
    assert {r.name: r.default_command for r in recipes.values() if r.default_command} == \
        {name: (shell,) for name, shell in SHELL_RECIPES.items()}  # a new shell recipe is listed above
    assert "without arguments, command bash" in recipes["ubuntu"].grants()


def test_trust_is_asked_for_project_recipes_and_asked_again_after_an_edit(toolbox, upstream, tmp_path):
    upstream.publish("ghcr.io/jqlang/jq", "2", tool_image("project-jq"))
    (tmp_path / "toolbox.toml").write_text('[recipes.jq]\nimage = "ghcr.io/jqlang/jq"\ndefault_version = '
                                           '"2"\n'
                                           'pass_env = ["SECRET_*"]\nmounts = [{ source = "~/.ssh", target = '
                                           '"~/.ssh" }]\n')
    refused = run(toolbox, "jq", cwd=tmp_path)
    assert refused.returncode == 125 and "not trusted yet" in refused.stderr
    assert ("+ mount ~/.ssh at ~/.ssh read-write" in refused.stderr
            and "+ host variable SECRET_*" in refused.stderr)
    # same image as the built-in: not in the diff
    assert "- image ghcr.io/jqlang/jq (tag {version})" not in refused.stderr
    assert "replaces the builtin recipe" in refused.stderr and "toolbox trust" in refused.stderr
    trusted = cli(toolbox, "trust", cwd=tmp_path)
    assert trusted.returncode == 0 and "+ host variable SECRET_*" in trusted.stdout
    if userns_overlay_works():
        assert run(toolbox, "jq", cwd=tmp_path).stdout == "project-jq tool:\n"
    (tmp_path / "toolbox.toml").write_text((tmp_path / "toolbox.toml").read_text().replace("SECRET_*",
                                                                                           "AWS_*"))
    again = run(toolbox, "jq", cwd=tmp_path)
    assert again.returncode == 125 and "+ host variable AWS_*" in again.stderr
    assert (cli(toolbox, "trust", cwd=tmp_path).returncode == 0
            and cli(toolbox, "untrust", cwd=tmp_path).returncode == 0)
    assert run(toolbox, "jq", cwd=tmp_path).returncode == 125
    # Built-in recipes need no trust, even in an untrusted project.
    (tmp_path / "toolbox.toml").write_text('[recipes.mine]\nimage = "ghcr.io/x/mine"\n'
                                           'default_version = "1"\n')
    assert "not trusted" not in run(toolbox, "jq@2", cwd=tmp_path).stderr


def test_global_pins_outside_a_project_and_the_config_file_stays_private(toolbox, upstream, tmp_path):
    upstream.publish("ghcr.io/jqlang/jq", "1.6", tool_image("jq-1.6"))
    os.unlink(toolbox.layout.config_file)  # as on a fresh machine: add --global creates it
    added = cli(toolbox, "add", "--global", "jq@1.6", cwd=tmp_path)
    # no mirror config yet: offline here
    assert added.returncode == 125 and "cannot reach ghcr.io" in added.stderr
    assert not os.path.exists(toolbox.layout.config_file)  # and the file it made is gone again
    upstream = Upstream(toolbox, upstream.registry)  # config.toml written anew, then pinned globally
    upstream.publish("ghcr.io/jqlang/jq", "1.6", tool_image("jq-1.6"))
    os.chmod(toolbox.layout.config_file, 0o600)
    assert cli(toolbox, "add", "--global", "jq@1.6", cwd=tmp_path).returncode == 0
    assert os.stat(toolbox.layout.config_file).st_mode & 0o777 == 0o600  # an edit keeps the file's mode
    listed = json.loads(cli(toolbox, "list", "--json", cwd=tmp_path).stdout)
    assert [(r["tool"], r["version"], r["pinned_by"]) for r in listed] == [("jq", "1.6",
                                                                            toolbox.layout.config_file)]
    assert os.path.exists(os.path.join(toolbox.layout.config_dir, "toolbox.lock"))
    if userns_overlay_works():
        assert run(toolbox, "jq", cwd=tmp_path).stdout == "jq-1.6 tool:\n"


def test_edit_pins_creates_and_edits_only_its_lines(tmp_path):
    from toolbox.project.project import edit_pins

    private = tmp_path / "config.toml"
    edit_pins(str(private), {"jq": "1"}, new_file_mode=0o600)  # what `add --global` asks for config.toml
    assert private.stat().st_mode & 0o777 == 0o600
    path = tmp_path / "toolbox.toml"
    edit_pins(str(path), {"jq": "1.7.1", "python3.11": "x"})
    assert path.read_text() == '[tools]\njq = "1.7.1"\n"python3.11" = "x"\n'
    path.write_text('title = 1\n[other]\na = 1\n')
    edit_pins(str(path), {"jq": "1"})
    assert path.read_text() == 'title = 1\n[other]\na = 1\n\n[tools]\njq = "1"\n'
    edit_pins(str(path), {}, remove=("jq",))
    assert path.read_text() == 'title = 1\n[other]\na = 1\n\n[tools]\n'
    path.write_text('tools.jq = "1"  # a dotted key: not a line toolbox may rewrite\n')
    with pytest.raises(ConfigError, match="cannot edit"):
        edit_pins(str(path), {"node": "20"})
    assert path.read_text() == 'tools.jq = "1"  # a dotted key: not a line toolbox may rewrite\n'
    path.write_text('title = 1\n[other]\na = 1\n\n[tools]\n')
    with pytest.raises(ConfigError, match="unknown top-level key 'other'"):
        from toolbox.project.project import load_project

        load_project(str(path))


# -- what a lock may say ---------------------------------------------------------------------------
def _lock_doc(path):
    import tomllib

    return tomllib.loads(path.read_text())


def _write_lock_doc(path, doc):
    import tomli_w

    path.write_text(tomli_w.dumps(doc))


@pytest.mark.needs_userns_overlay
def test_a_lock_cannot_point_a_version_at_another_manifest_of_the_repository(toolbox, upstream, tmp_path):
    for version in ("3.12", "3.10"):
        upstream.publish("docker.io/library/python", f"{version}-slim",
                         multiarch(f"py-{version}", program="/usr/local/bin/python"))
    for name, version in (("p", "3.12"), ("other", "3.10")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "toolbox.toml").write_text(f'[tools]\npython = "{version}"\n')
        assert cli(toolbox, "lock", cwd=tmp_path / name).returncode == 0
    project, lock_path = tmp_path / "p", tmp_path / "p" / "toolbox.lock"
    good, other = _lock_doc(lock_path), _lock_doc(tmp_path / "other" / "toolbox.lock")
    assert cli(toolbox, "lock", "--check", cwd=project).returncode == 0
    # The platform map edited to run 3.10's manifest for 3.12: refused, online or not, stored or not.
    edited = json.loads(json.dumps(good))
    edited["tools"]["python"]["platforms"]["linux/amd64"] = (
        other["tools"]["python"]["platforms"]["linux/amd64"])
    _write_lock_doc(lock_path, edited)
    for args in (["run", "python"], ["lock", "--frozen"], ["sync"], ["lock", "--check"]):
        result = cli(toolbox, *args, cwd=project, env={"CI": "true"})
        assert (result.returncode == 125
                and "does not match the index" in result.stderr + result.stdout), (args, result.stderr)
        assert "py-3.10" not in result.stdout
    listed = cli(toolbox, "list", cwd=project)
    assert "LOCK DAMAGED" in listed.stdout and "does not match the index" in listed.stderr
    import shutil

    shutil.rmtree(toolbox.layout.cache_dir)  # nothing stored: the pull reads the index, and the check follows
    fresh = run(toolbox, "python", cwd=project)
    assert fresh.returncode == 125 and "does not match the index" in fresh.stderr and fresh.stdout == ""
    # The whole entry swapped for 3.10's, consistent in itself: offline it cannot be told apart
    # (it runs 3.10), and `lock --check` against the registry says so.
    swapped = json.loads(json.dumps(good))
    swapped["tools"]["python"].update(digest=other["tools"]["python"]["digest"],
                                      platforms=other["tools"]["python"]["platforms"])
    _write_lock_doc(lock_path, swapped)
    checked = cli(toolbox, "lock", "--check", cwd=project)
    assert (checked.returncode == 125 and "the tag 3.12-slim now names" in checked.stdout
            and "or the lock was edited" in checked.stdout)
    # A lone manifest cannot lock more than itself; a map sending two platforms to one manifest is refused.
    lone = json.loads(json.dumps(good))
    lone["tools"]["python"]["digest"] = lone["tools"]["python"]["platforms"]["linux/amd64"]
    _write_lock_doc(lock_path, lone)
    frozen = cli(toolbox, "lock", "--frozen", cwd=project)
    assert frozen.returncode == 125 and "is one platform's manifest" in frozen.stderr
    same = json.loads(json.dumps(good))
    same["tools"]["python"]["platforms"]["linux/arm64/v8"] = (
        same["tools"]["python"]["platforms"]["linux/amd64"])
    _write_lock_doc(lock_path, same)
    assert ("two platforms are mapped to the same manifest"
            in cli(toolbox, "lock", "--frozen", cwd=project).stderr)
    _write_lock_doc(lock_path, good)
    assert run(toolbox, "python", "-V", cwd=project).stdout == "py-3.12 python:-V\n"


@pytest.mark.needs_userns_overlay
def test_a_tool_name_works_wherever_an_image_name_does(toolbox, upstream, tmp_path):
    """`pull jq@1.7.1` was "invalid digest" and `inspect jq` meant docker.io/library/jq: a bare
    word is a tool first (the image it runs here), then an image; `images` says which tool each
    image is, and `rmi` of an image a project runs names the project."""
    locked = upstream.publish("ghcr.io/jqlang/jq", "1.7.1", multiarch("jq-1.7.1"))
    upstream.publish("ghcr.io/jqlang/jq", "1.6", tool_image("jq-1.6"))
    project = toolbox.home / "p"
    project.mkdir()
    (project / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\n')
    pulled = cli(toolbox, "pull", "jq@1.6", cwd=project)
    assert pulled.returncode == 0 and "ghcr.io/jqlang/jq:1.6" in pulled.stdout, pulled.stderr
    assert run(toolbox, "jq", cwd=project).stdout == "jq-1.7.1 tool:\n"  # locks, pulls by the lock's digest
    images_ = json.loads(cli(toolbox, "images", "--json", cwd=project).stdout)
    assert {(i["tool"], i["reference"]) for i in images_} == {("jq 1.6", "ghcr.io/jqlang/jq:1.6"),
                                                               ("jq 1.7.1 (project ~/p)",
                                                                f"ghcr.io/jqlang/jq@{locked}")}
    table = cli(toolbox, "images", cwd=project).stdout
    assert "jq 1.7.1 (project ~/p)" in table and max(len(line) for line in table.splitlines()) < 120
    inspected = cli(toolbox, "inspect", "jq", cwd=project)
    assert inspected.returncode == 0 and f"Index:       {locked}" in inspected.stdout, inspected.stderr
    assert "ghcr.io/jqlang/jq:1.6" in cli(toolbox, "inspect", "jq@1.6", cwd=project).stdout
    explicit = cli(toolbox, "inspect", "docker.io/library/jq", cwd=project)
    # the image, explicitly: not stored
    assert explicit.returncode == 125 and "docker.io/library/jq" in explicit.stderr
    removed = cli(toolbox, "rmi", "jq", cwd=project)
    assert removed.returncode == 0 and f"Removed ghcr.io/jqlang/jq@{locked}" in removed.stdout, removed.stderr
    assert f"{project / 'toolbox.toml'} pins jq to an image removed" in removed.stderr
    assert cli(toolbox, "rmi", "jq@1.6", cwd=project).returncode == 0
    assert json.loads(cli(toolbox, "images", "--json", cwd=project).stdout) == []


# -- disk use that knows the locks -------------------------------------------------------------------
def test_prune_unused_keeps_what_the_locks_toolbox_has_seen_use(toolbox, upstream, registry, pushed_images):
    """Projects used here and the global pins keep their images; `prune --unused` (after a dry
    run that removes nothing) drops the rest: an image pulled by hand, a tool pulled by tag, the
    images of a project deleted since. `images` and `df` say which tool and version each image is
    and for whom, with ~ for the home; a lock with conflict markers keeps what its text names."""
    jq = upstream.publish("ghcr.io/jqlang/jq", "1.7.1", multiarch("jq-1.7.1"))
    upstream.publish("ghcr.io/jqlang/jq", "1.6", tool_image("jq-1.6"))
    python = upstream.publish("docker.io/library/python", "3.13-slim",
                              tool_image("py-3.13", "/usr/local/bin/python"))
    yq = upstream.publish("docker.io/mikefarah/yq", "4.44.3", tool_image("yq"))
    home = toolbox.home
    pins = {"a": 'jq = "1.7.1"\npython = "3.13"\n', "b": 'jq = "1.7.1"\n', "c": 'jq = "1.6"\n'}
    for name, text in pins.items():
        (home / name).mkdir()
        (home / name / "toolbox.toml").write_text("[tools]\n" + text)
        synced = cli(toolbox, "sync", cwd=home / name)
        assert synced.returncode == 0, synced.stderr
    assert cli(toolbox, "add", "--global", "yq@4.44.3", cwd=home).returncode == 0
    assert cli(toolbox, "sync", cwd=home).returncode == 0  # outside any project: the global pins
    by_hand = pushed_images["busybox"].reference
    for word in ("jq@1.6", by_hand):
        assert cli(toolbox, "pull", word, cwd=home).returncode == 0
    import shutil

    shutil.rmtree(home / "c")  # a project deleted: its lock uses nothing any more
    listed = {i["reference"]: i for i in json.loads(cli(toolbox, "images", "--json", cwd=home).stdout)}
    assert {ref: i["tool"] for ref, i in listed.items()} == {
        f"ghcr.io/jqlang/jq@{jq}": "jq 1.7.1 (projects ~/a, ~/b)",
        f"docker.io/library/python@{python}": "python 3.13 (project ~/a)",
        f"docker.io/mikefarah/yq@{yq}": "yq 4.44.3 (global pins)", "ghcr.io/jqlang/jq:1.6": "jq 1.6",
        f"ghcr.io/jqlang/jq@{listed['ghcr.io/jqlang/jq:1.6']['digest']}": "jq", by_hand: None}
    assert {u["pins"] for u in listed[f"ghcr.io/jqlang/jq@{jq}"]["used_by"]} == {
        str(home / "a" / "toolbox.toml"), str(home / "b" / "toolbox.toml")}
    df = cli(toolbox, "df", cwd=home)
    assert "python 3.13 (project ~/a)" in df.stdout and "yq 4.44.3 (global pins)" in df.stdout, df.stdout
    assert "Images no lock toolbox knows uses: 3; removing them would free" in df.stdout, df.stdout
    # A merge left conflict markers in a's lock: every digest written in it is still kept.
    lock_a = home / "a" / "toolbox.lock"
    lock_a.write_text("<<<<<<< HEAD\n" + lock_a.read_text() + "=======\n>>>>>>> theirs\n")
    dry = cli(toolbox, "prune", "--unused", "--dry-run", cwd=home)
    assert dry.returncode == 0, dry.stderr
    would = [line.split()[0] for line in dry.stdout.splitlines() if line.startswith("  ")]
    assert sorted(would) == sorted(
        [by_hand, "ghcr.io/jqlang/jq:1.6",
         f"ghcr.io/jqlang/jq@{listed['ghcr.io/jqlang/jq:1.6']['digest'][:19]}"]), dry.stdout
    assert ("Would free " in dry.stdout and "project ~/a (" in dry.stdout and "project ~/b" in dry.stdout
            and "global pins" in dry.stdout)
    # a dry run removes nothing
    assert len(json.loads(cli(toolbox, "images", "--json", cwd=home).stdout)) == 6
    # the default keeps every image, and says what --unused would do
    offered = cli(toolbox, "prune", cwd=home)
    assert (offered.returncode == 0 and "3 images no lock toolbox knows uses" in offered.stdout
            and "toolbox prune --unused" in offered.stdout), offered.stdout
    assert len(json.loads(cli(toolbox, "images", "--json", cwd=home).stdout)) == 6
    pruned = cli(toolbox, "prune", "--unused", cwd=home)
    assert pruned.returncode == 0 and "Removed 3 images" in pruned.stdout, pruned.stdout + pruned.stderr
    assert set(json.loads(cli(toolbox, "images", "--json", cwd=home).stdout)[i]["reference"]
               for i in range(3)) == {
        f"ghcr.io/jqlang/jq@{jq}", f"docker.io/library/python@{python}", f"docker.io/mikefarah/yq@{yq}"}
    from toolbox.ops.usage import remembered_projects

    # the deleted project is forgotten
    assert str(home / "c" / "toolbox.toml") not in remembered_projects(toolbox.layout)
    lock_a.write_text(lock_a.read_text().split("\n", 1)[1].rsplit("=======", 1)[0])
    for name in ("a", "b"):  # nothing a lock uses was removed: nothing to pull
        synced = cli(toolbox, "sync", "--frozen", cwd=home / name)
        assert synced.returncode == 0 and "Pulling" not in synced.stderr, synced.stderr


def test_rmi_of_a_tool_warns_for_every_project_whose_lock_runs_it(toolbox, upstream):
    """`rmi jq` names each project whose lock runs the image removed (not only those a tool plan
    was made for); `rmi yq` of a tool whose image is not stored says so, without "pull it
    first"."""
    locked = upstream.publish("ghcr.io/jqlang/jq", "1.7.1", tool_image("jq-1.7.1"))
    for name in ("a", "b"):
        (toolbox.home / name).mkdir()
        (toolbox.home / name / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\n')
        assert cli(toolbox, "sync", cwd=toolbox.home / name).returncode == 0
    removed = cli(toolbox, "rmi", "jq", cwd=toolbox.home / "a")
    assert removed.returncode == 0 and f"Removed ghcr.io/jqlang/jq@{locked}" in removed.stdout, removed.stderr
    for name in ("a", "b"):
        assert (f"warning: {toolbox.home / name / 'toolbox.toml'} pins jq to an image removed"
                in removed.stderr), removed.stderr
    # Projects run before toolbox remembered them are known by their tool plans.
    import shutil

    from toolbox.hot import plans
    from toolbox.ops.usage import remembered_projects

    shutil.rmtree(toolbox.layout.known_projects_dir)
    project_b = str(toolbox.home / "b" / "toolbox.toml")
    os.makedirs(toolbox.layout.tool_plans_dir, exist_ok=True)
    with open(plans.plan_path(toolbox.layout, project_b, "jq"), "wb") as plan:
        plan.write(plans.plan_bytes(project_b, "jq", {"image": f"ghcr.io/jqlang/jq@{locked}", "pinned": True},
                                    {}))
    assert set(remembered_projects(toolbox.layout)) == {project_b}
    missing = cli(toolbox, "rmi", "yq", cwd=toolbox.home)
    assert missing.returncode == 125, missing.stderr
    assert "'yq' (docker.io/mikefarah/yq:4.44.3 here) is not in the store" in missing.stderr, missing.stderr
    assert ("pull it first" not in missing.stderr
            and "hint: `toolbox images` lists the stored images" in missing.stderr)


# -- what changed ----------------------------------------------------------------------------------
def _short(digest):
    return digest.partition(":")[2][:12]


def test_lock_sync_and_upgrade_print_only_what_changed(toolbox, upstream, tmp_path):
    """Round 2 printed every tool at every `lock` and `sync`: a change was hard to see. Now
    only changes, one line each, and --dry-run shows them without writing."""
    jq_a = upstream.publish("ghcr.io/jqlang/jq", "1.7.1", multiarch("jq-a"))
    py12 = upstream.publish("docker.io/library/python", "3.12-slim",
                            tool_image("py-3.12", "/usr/local/bin/python"))
    py13 = upstream.publish("docker.io/library/python", "3.13-slim",
                            tool_image("py-3.13", "/usr/local/bin/python"))
    node = upstream.publish("docker.io/library/node", "22-slim", tool_image("node-22", "/usr/local/bin/node"))
    project = tmp_path / "project"
    project.mkdir()
    pins = project / "toolbox.toml"
    pins.write_text('[tools]\njq = "1.7.1"\npython = "3.12"\n')
    first = cli(toolbox, "lock", cwd=project)
    assert (first.returncode, first.stdout) == (0, f"jq added: 1.7.1 ({_short(jq_a)})\npython added: 3.12 "
                                                   f"({_short(py12)})\n"), first.stderr
    assert cli(toolbox, "lock", cwd=project).stdout == "toolbox.lock is up to date\n"
    synced = cli(toolbox, "sync", cwd=project)
    assert synced.stdout == (f"pulled jq 1.7.1 ({_short(jq_a)})\n"
                             f"pulled python 3.12 ({_short(py12)})\n"), synced.stderr
    assert (cli(toolbox, "sync", cwd=project).stdout
            == "toolbox.lock is up to date, and every image it names is stored\n")
    # A pin bump: the dry run says what would change and writes nothing; sync does it.
    pins.write_text('[tools]\njq = "1.7.1"\npython = "3.13"\n')
    lock_before = (project / "toolbox.lock").read_bytes()
    dry = cli(toolbox, "lock", "--dry-run", cwd=project)
    assert dry.stdout == (f"python 3.12 → 3.13 ({_short(py12)} → {_short(py13)})\n"
                          "dry run: toolbox.lock not written\n"), dry.stderr
    assert (project / "toolbox.lock").read_bytes() == lock_before
    synced = cli(toolbox, "sync", cwd=project)
    assert synced.stdout == (f"python 3.12 → 3.13 ({_short(py12)} → {_short(py13)})\n"
                             f"pulled python 3.13 ({_short(py13)})\n"), synced.stderr
    # The tag moves upstream: only --upgrade takes it, and says so.
    jq_b = upstream.publish("ghcr.io/jqlang/jq", "1.7.1", multiarch("jq-b"))
    lock_before = (project / "toolbox.lock").read_bytes()
    assert cli(toolbox, "lock", cwd=project).stdout == "toolbox.lock is up to date\n"
    dry = cli(toolbox, "lock", "--upgrade", "jq", "--dry-run", cwd=project)
    assert dry.stdout == (f"jq: tag 1.7.1 moved ({_short(jq_a)} → {_short(jq_b)})\n"
                          "dry run: toolbox.lock not written\n"), dry.stderr
    assert (project / "toolbox.lock").read_bytes() == lock_before
    upgraded = cli(toolbox, "lock", "--upgrade", "jq", cwd=project)
    assert upgraded.stdout == f"jq: tag 1.7.1 moved ({_short(jq_a)} → {_short(jq_b)})\n", upgraded.stderr
    assert cli(toolbox, "lock", "--upgrade", cwd=project).stdout == "toolbox.lock is up to date\n"
    # A pin added and one removed.
    pins.write_text('[tools]\njq = "1.7.1"\nnode = "22"\n')
    changed = cli(toolbox, "lock", cwd=project)
    assert changed.stdout == (f"node added: 22 ({_short(node)})\n"
                              f"python removed (was 3.13, {_short(py13)})\n"), changed.stderr
    # From another directory of the project the lock is named in full.
    (project / "src").mkdir()
    assert cli(toolbox, "lock", cwd=project / "src").stdout == f"{project / 'toolbox.lock'} is up to date\n"


@pytest.mark.needs_userns_overlay
def test_the_first_call_after_a_lock_change_says_so_once(toolbox, upstream, tmp_path):
    """A teammate's upgrade arrives with `git pull`: the first call of the tool says what it
    runs now, in one line on stderr; later calls, and a tool's very first call, say nothing."""
    upstream.publish("ghcr.io/jqlang/jq", "1.7.1", tool_image("jq-1.7.1"))
    upstream.publish("ghcr.io/jqlang/jq", "1.7.2", tool_image("jq-1.7.2"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\n')

    def said(result):  # what toolbox said, without a pull's progress
        return [line for line in result.stderr.splitlines() if line.startswith("toolbox:")]

    first = run(toolbox, "jq", cwd=project)
    assert (first.stdout, said(first)) == ("jq-1.7.1 tool:\n", []), first.stderr
    assert run(toolbox, "jq", cwd=project).stderr == ""
    # The teammate's commit: both files change (here written by a `toolbox lock` of theirs).
    teammate = tmp_path / "teammate"
    teammate.mkdir()
    (teammate / "toolbox.toml").write_text('[tools]\njq = "1.7.2"\n')
    assert cli(toolbox, "lock", cwd=teammate).returncode == 0
    (project / "toolbox.toml").write_text((teammate / "toolbox.toml").read_text())
    (project / "toolbox.lock").write_bytes((teammate / "toolbox.lock").read_bytes())
    changed = run(toolbox, "jq", cwd=project)
    assert changed.stdout == "jq-1.7.2 tool:\n"
    assert said(changed) == ["toolbox: warning: jq is now 1.7.2 (was 1.7.1), "
                             f"from {project / 'toolbox.lock'}"], changed.stderr
    assert run(toolbox, "jq", cwd=project).stderr == ""
    assert said(run(toolbox, "jq", cwd=teammate)) == []  # another pins file: its own first call
    # The same version by another digest (the tag moved, and someone ran `lock --upgrade`).
    old = _lock_doc(project / "toolbox.lock")["tools"]["jq"]["digest"]
    moved = upstream.publish("ghcr.io/jqlang/jq", "1.7.2", tool_image("jq-1.7.2-rebuilt"))
    assert cli(toolbox, "lock", "--upgrade", cwd=project).returncode == 0
    upgraded = run(toolbox, "jq", cwd=project)
    assert upgraded.stdout == "jq-1.7.2-rebuilt tool:\n"
    assert said(upgraded) == [f"toolbox: warning: jq 1.7.2 is now {_short(moved)} (was {_short(old)}), from "
                              f"{project / 'toolbox.lock'}"]


# -- merges ------------------------------------------------------------------------------------------
def _git(*args, cwd):
    env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "HOME": str(cwd),
           "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    return subprocess.run(["git", "-c", "init.defaultBranch=main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("style", ["merge", "diff3"])
def test_a_conflicted_lock_is_refused_with_the_way_out_and_lock_resolves_only_what_changed(toolbox, registry,
                                                                                           tmp_path, style):
    """Two branches locked the same project differently; git leaves conflict markers in
    toolbox.lock. Every command but `lock` says so and what to do; `toolbox lock` keeps each
    entry that matches its pin (from either side) and resolves only the tool whose two sides
    both match with different digests (the tag moved between the two lockings)."""
    from tests.support.faults import FaultProxy

    with FaultProxy(registry.url) as proxy:
        upstream = Upstream(toolbox, registry, via=proxy)
        upstream.publish("ghcr.io/jqlang/jq", "1.7.1", multiarch("jq-a"))
        for version in ("3.11", "3.12", "3.13"):
            upstream.publish("docker.io/library/python", f"{version}-slim",
                             multiarch(f"py-{version}", program="/usr/local/bin/python"))
        upstream.publish("docker.io/mikefarah/yq", "4.44.3", multiarch("yq"))
        upstream.publish("docker.io/library/node", "22-slim",
                         multiarch("node-22", program="/usr/local/bin/node"))
        repo = tmp_path / "repo"
        repo.mkdir()
        assert _git("init", "-q", cwd=repo).returncode == 0
        pins = repo / "toolbox.toml"

        def commit(toml, message, *lock_args):
            pins.write_text(toml)
            locked = cli(toolbox, "lock", *lock_args, cwd=repo)
            assert locked.returncode == 0, locked.stderr
            assert (_git("add", "-A", cwd=repo).returncode == 0
                    and _git("commit", "-qm", message, cwd=repo).returncode == 0)

        commit('[tools]\njq = "1.7.1"\npython = "3.12"\nyq = "4.44.3"\n', "pins")
        assert _git("checkout", "-qb", "lead", cwd=repo).returncode == 0
        upstream.publish("ghcr.io/jqlang/jq", "1.7.1", multiarch("jq-b"))  # the tag moves; the lead upgrades
        commit('[tools]\njq = "1.7.1"\nnode = "22"\npython = "3.13"\nyq = "4.44.3"\n', "python 3.13, node",
               "--upgrade", "jq")
        lead_lock = _lock_doc(repo / "toolbox.lock")
        assert _git("checkout", "-qb", "mate", "main", cwd=repo).returncode == 0
        # it moves again; the teammate upgrades
        jq_c = upstream.publish("ghcr.io/jqlang/jq", "1.7.1", multiarch("jq-c"))
        commit('[tools]\njq = "1.7.1"\npython = "3.11"\nyq = "4.44.3"\n', "python 3.11", "--upgrade", "jq")
        assert _git("checkout", "-q", "lead", cwd=repo).returncode == 0
        merged = _git("-c", f"merge.conflictStyle={style}", "merge", "mate", cwd=repo)
        assert (merged.returncode != 0
                and "CONFLICT (content): Merge conflict in toolbox.lock" in merged.stdout), merged.stdout
        text = (repo / "toolbox.lock").read_text()
        assert "<<<<<<< " in text and "=======\n" in text and ("||||||| " in text) == (style == "diff3")
        # the person resolves toolbox.toml
        pins.write_text('[tools]\njq = "1.7.1"\nnode = "22"\npython = "3.13"\nyq = "4.44.3"\n')
        # Everything but `toolbox lock` refuses, with what to do.
        for args, env in ((("run", "jq"), None), (("sync", "--frozen"), None), (("list",), None),
                          (("sync",), {"CI": "true"}), (("lock", "--frozen"), None)):
            refused = cli(toolbox, *args, cwd=repo, env=env)
            assert refused.returncode == 125, (args, refused.stderr)
            error, hint = refused.stderr.splitlines()
            assert error == (f"toolbox: error: {repo / 'toolbox.lock'} has merge conflicts "
                             "(git's <<<<<<< markers)"), (args, refused.stderr)
            assert "run `toolbox lock`" in hint and "keeping every entry that still matches its pin" in hint
        assert (repo / "toolbox.lock").read_text() == text
        # `toolbox lock` resolves: only jq asks the registry.
        proxy.log.clear()
        dry = cli(toolbox, "lock", "--dry-run", cwd=repo)
        assert dry.returncode == 0 and (repo / "toolbox.lock").read_text() == text, dry.stderr
        resolved = cli(toolbox, "lock", cwd=repo)
        assert resolved.returncode == 0, resolved.stderr
        assert resolved.stdout == dry.stdout.replace("dry run: toolbox.lock not written\n", "")
        jq_b = lead_lock["tools"]["jq"]["digest"]
        assert resolved.stdout == ("toolbox.lock had merge conflicts: kept the entries that match their pins "
                                   "(node, python, yq); resolved jq\n"
                                   f"jq: tag 1.7.1 moved ({_short(jq_b)} → {_short(jq_c)})\n")
        asked = [path for method, path, _range,
                 _action in proxy.log if "/manifests/" in path or "/blobs/" in path]
        assert asked and all("/ghcr/jqlang/jq/manifests/1.7.1" in path for path in asked), asked
        lock = _lock_doc(repo / "toolbox.lock")
        assert ({tool: lock["tools"][tool] for tool in ("node", "python", "yq")}
                == {t: lead_lock["tools"][t] for t in ("node", "python", "yq")})
        assert lock["tools"]["jq"]["digest"] == jq_c
        assert cli(toolbox, "lock", "--frozen", cwd=repo).stdout == "toolbox.lock is up to date\n"
        assert "<<<<<<<" not in (repo / "toolbox.lock").read_text()


def test_conflict_sides_and_what_each_side_still_says():
    from toolbox.project.lockfile import conflict_sides, has_conflict_markers, side_entries

    digest = "sha256:" + "a" * 64
    entry = ('[tools.jq]\nrecipe = "jq"\nsource = "builtin"\nversion = "1.7.1"\nimage = '
             '"ghcr.io/jqlang/jq"\ntag = "1.7.1"\n'
             f'digest = "{digest}"\n\n[tools.jq.platforms]\n"linux/amd64" = "{digest}"\n')
    text = ("lock_version = 1\n\n" + entry + "\n<<<<<<< HEAD\n[tools.node]\nrecipe = \"node\"\n||||||| "
                                             "base\n=======\n"
            "[tools.node]\nrecipe = 3\n>>>>>>> mate\n[tools.yq]\nimage = [\n")
    assert (has_conflict_markers(text.encode())
            and not has_conflict_markers(entry.encode() + b'x = "======="\n'))
    ours, theirs = conflict_sides(text)
    assert ("recipe = \"node\"" in ours and "recipe = 3" not in ours and "recipe = 3" in theirs
            and "base" not in ours + theirs)
    # Neither side is valid TOML (yq's table is cut), yet jq's entry is read from each; node's is incomplete.
    assert (set(side_entries(ours, "/p/toolbox.lock")) == set(side_entries(theirs, "/p/toolbox.lock"))
            == {"jq"})
    assert side_entries(ours, "/p/toolbox.lock")["jq"].digest == digest


# -- recipes that do not validate ------------------------------------------------------------------------
@pytest.mark.needs_userns_overlay
def test_a_broken_recipe_stops_only_its_own_tool(toolbox, upstream, tmp_path):
    """One unknown key in your yq.toml and one in a project's [recipes.lint] stopped every tool
    (jq too): now only yq and lint fail, each with its recipe's error, and `recipes list`
    shows them with it."""
    upstream.publish("ghcr.io/jqlang/jq", "1.7.1", tool_image("jq-1.7.1"))
    recipes = Path(toolbox.layout.user_recipes_dir)
    recipes.mkdir(parents=True)
    (recipes / "yq.toml").write_text('image = "docker.io/mikefarah/yq"\ndefault_version = "4"\ncolour = '
                                     '"red"\n')
    project = tmp_path / "project"
    project.mkdir()
    (project / "toolbox.toml").write_text('[tools]\nfmt = "1"\njq = "1.7.1"\nlint = "1"\nyq = "4"\n\n'
                                          '[recipes.lint]\nimage = "ghcr.io/example/lint"\ndefault_version = '
                                          '"1"\nnetwork = "bridge"\n\n'
                                          '[recipes.fmt]\nimage = "ghcr.io/example/fmt"\ndefault_version = '
                                          '"1"\n')
    upstream.publish("ghcr.io/example/fmt", "1", tool_image("fmt-1"))
    ran = run(toolbox, "jq", "x", cwd=project)
    assert ((ran.returncode, ran.stdout) == (0, "jq-1.7.1 tool:x\n")
            and "toolbox:" not in ran.stderr), ran.stderr
    assert run(toolbox, "jq", "y", cwd=project).stdout == "jq-1.7.1 tool:y\n"  # from its tool plan
    assert run(toolbox, "jq@1.7.1", cwd=tmp_path).stdout == "jq-1.7.1 tool:\n"  # and outside the project
    yq = run(toolbox, "yq", cwd=project)
    assert yq.returncode == 125 and yq.stderr.splitlines() == [
        f"toolbox: error: {recipes / 'yq.toml'}: recipe 'yq': unknown key 'colour'",
        "toolbox: hint: allowed keys: aliases, client_of, command, default_command, default_version, "
        "description, env, image, mounts, network, pass_env, service, tag, tty"], yq.stderr
    lint = run(toolbox, "lint", cwd=project)
    assert (lint.returncode == 125
            and f"{project / 'toolbox.toml'}: recipe 'lint': 'network' must be one of host, none"
            in lint.stderr)
    listed = cli(toolbox, "recipes", "list", cwd=project)
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line for line in listed.stdout.splitlines()[1:]}
    assert ("BROKEN" in rows["yq"] and "user" in rows["yq"] and "BROKEN" in rows["lint"]
            and "BROKEN" not in rows["jq"])
    assert "unknown key 'colour'" in listed.stderr and "'network' must be one of" in listed.stderr
    as_json = {r["name"]: r
               for r in json.loads(cli(toolbox, "recipes", "list", "--json", cwd=project).stdout)}
    assert as_json["yq"]["error"].endswith("unknown key 'colour'") and as_json["jq"]["error"] is None
    # The project's other recipe is trusted and runs as before.
    assert run(toolbox, "fmt", cwd=project).returncode == 125  # not trusted yet
    trusted = cli(toolbox, "trust", cwd=project)
    assert trusted.returncode == 0 and "fmt" in trusted.stdout, trusted.stderr
    assert run(toolbox, "fmt", "a", cwd=project).stdout == "fmt-1 tool:a\n"
    locked = cli(toolbox, "lock", cwd=project)  # `lock` wants every pin: the first broken one says why
    assert (locked.returncode == 125
            and "recipe 'lint': 'network' must be one of" in locked.stderr), locked.stderr
    (recipes / "yq.toml").write_text('image = "docker.io/mikefarah/yq"\ndefault_version = "4"\n')
    upstream.publish("docker.io/mikefarah/yq", "4", tool_image("yq-4"))
    assert run(toolbox, "yq", cwd=project).stdout == "yq-4 tool:\n"  # fixed, it runs
