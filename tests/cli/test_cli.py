"""The command line's edges: every command, `toolbox run` and a shim end in one `toolbox: error:`
line, a `toolbox: hint:` line and toolbox's exit status, whatever the environment does to them;
usage errors and help in the usual notation; completion of the names toolbox knows.

The commands are enumerated from the typer app, so a command added later is walked too."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from toolbox.layout import Layout

from tests.support.upstream import Upstream, tool_image

# -- every command, under hostile environments ---------------------------------------------------
STATUSES = {0, 125, 126, 127}  # success, toolbox failed, cannot run, not found; doctor adds 1


def all_commands():
    """(words, click command) for every leaf command of the app, e.g. (("volume", "ls"), ...)."""
    import typer.main

    from toolbox.cli.app import app

    def walk(command, words):
        children = getattr(command, "commands", None)
        if children is None:
            yield words, command
            return
        for name, child in sorted(children.items()):
            yield from walk(child, words + (name,))

    return list(walk(typer.main.get_command(app), ()))


class Installation:
    """A toolbox installed in the usual places below HOME (no TOOLBOX_HOME: the environment
    decides where things are), used once before the environment turns hostile: two images
    pulled, one run (its run plan made), jq pinned by a project and globally, its shim installed.
    Each test works on a copy (`copy_to`), so what one walk removes the next still has."""

    def __init__(self, root, env, image, other_image):
        self.root, self.env, self.image, self.other_image = root, env, image, other_image
        self.layout = Layout.from_env(env)
        self.project = root / "project"
        self.shim = os.path.join(self.layout.shims_dir, "jq")

    @classmethod
    def make(cls, toolbox, registry, image, other_image, root):
        env = {k: v for k, v in toolbox.env.items() if not k.startswith(("TOOLBOX_", "XDG_"))}
        env.update(XDG_RUNTIME_DIR=toolbox.env["XDG_RUNTIME_DIR"], HOME=str(root / "home"))
        installed = cls(root, env, image.reference, other_image.reference)
        toolbox.env, toolbox.layout = env, installed.layout  # where Upstream configures the mirrors
        Upstream(toolbox, registry).publish("ghcr.io/jqlang/jq", "1.7.1", tool_image("jq-1.7.1"))
        installed.project.mkdir(parents=True)
        (root / "home").mkdir(exist_ok=True)
        (installed.project / "toolbox.toml").write_text('[tools]\njq = "1.7.1"\n')
        for args in (("pull", installed.image), ("pull", installed.other_image),
                     ("run", installed.image, "true"), ("add", "--global", "jq"), ("lock",), ("run", "jq"),
                     ("shim", "install", "jq")):
            done = installed.cli(*args)
            # 125: no user namespaces
            assert done.returncode in ((0, 125) if args[0] == "run" else (0,)), (args, done.stderr)
        return installed

    def copy_to(self, root):
        shutil.copytree(self.root, root, symlinks=True)
        return Installation(root, dict(self.env, HOME=str(root / "home")), self.image, self.other_image)

    def cli(self, *args):
        return subprocess.run([sys.executable, "-m", "toolbox", *args], env=self.env, cwd=self.project,
                              capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)


# Arguments by parameter name (a new command's unknown parameter gets "x"). What the walk passes
# to commands that remove things is not what `run` and the shim use (jq, the first image), so
# the walk's commands can run at once.
ARGUMENT_VALUES = {"reference": "OTHER-IMAGE", "references": "OTHER-IMAGE", "path": "image.tar", "name": "x",
                   "names": "x", "tools": "yq", "shell": "bash", "registry": "REGISTRY", "word": "jq"}


def command_lines(install, registry):
    """Every command with its required arguments, `toolbox run` of an image and of a tool, and
    the jq shim (a path)."""
    lines = []
    for words, command in all_commands():
        args = list(words)
        for param in command.params:
            if param.param_type_name == "argument" and param.required:
                value = ARGUMENT_VALUES.get(param.name, "x")
                args.append({"OTHER-IMAGE": install.other_image, "REGISTRY": registry.host}.get(value, value))
        if words == ("self", "uninstall"):
            args.append("--dry-run")  # the walk's other commands, run at the same time, need what it removes
        lines.append(args)
    lines += [["run", install.image, "true"], ["run", "jq", "-n", "1"], [install.shim, "-n", "1"]]
    return lines


def _chmod_tree(path, dir_mode):
    """`path` and the directories two levels below it (not the layer trees deeper in a store)."""
    for directory, dirs, _files in os.walk(path):
        os.chmod(directory, dir_mode)
        if directory.count("/") - path.count("/") >= 2:
            dirs.clear()


def _hostile(name, install, tmp_path):
    """(environment, cwd, whether the cwd is deleted before the command starts, undo)."""
    env, cwd, layout = dict(install.env), install.project, install.layout
    undo = []
    if name == "cwd deleted":
        pass  # each command's own, removed as it starts (tests/support/forkrun.py)
    elif name == "cwd read-only":
        os.chmod(cwd, 0o555)
        undo.append(lambda: os.chmod(install.project, 0o755))
    elif name == "config dir unreadable":
        os.chmod(layout.config_dir, 0)
        undo.append(lambda: os.chmod(layout.config_dir, 0o755))
        assert not os.access(layout.config_dir, os.R_OK), "runs as an ordinary user (scripts/test)"
    elif name == "data dir read-only":
        _chmod_tree(layout.data_dir, 0o555)
        undo.append(lambda: _chmod_tree(layout.data_dir, 0o755))
        assert not os.access(layout.shims_dir, os.W_OK)
    elif name == "store read-only":
        _chmod_tree(layout.store_dir, 0o555)
        undo.append(lambda: _chmod_tree(layout.store_dir, 0o755))
        assert not os.access(layout.store_dir, os.W_OK)
    elif name == "HOME unset":
        # toolbox's directories named by XDG instead: nothing lands in the account's real home
        home = env.pop("HOME")
        env.update(XDG_CONFIG_HOME=f"{home}/.config", XDG_DATA_HOME=f"{home}/.local/share",
                   XDG_CACHE_HOME=f"{home}/.cache")
    elif name == "HOME missing":
        env["HOME"] = "/nonexistent/home"
    elif name == "XDG directories are files":
        blocker = tmp_path / "a-file"
        blocker.write_text("")
        env.update(XDG_CONFIG_HOME=str(blocker), XDG_DATA_HOME=str(blocker), XDG_CACHE_HOME=str(blocker))
    else:
        raise AssertionError(name)
    return env, cwd, name == "cwd deleted", undo


HOSTILE = ["cwd deleted", "cwd read-only", "config dir unreadable", "data dir read-only", "store read-only",
           "HOME unset", "HOME missing", "XDG directories are files"]


class Ended:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


def run_lines(lines, env, cwd, delete_cwd, scratch):
    """Each line as its own toolbox process (tests/support/forkrun.py), four at a time."""
    scratch.mkdir()
    spec = scratch / "spec.json"
    spec.write_text(json.dumps({"lines": lines, "delete_cwd": delete_cwd, "scratch": str(scratch),
                                "parallel": 4}))
    driver = subprocess.run([sys.executable, "-m", "tests.support.forkrun", str(spec)], env=env, cwd=cwd,
                            capture_output=True, text=True, timeout=300)
    assert driver.returncode == 0, driver.stderr
    return [Ended(*ended) for ended in json.loads(driver.stdout)]


def _complaint(line, result):
    """What is wrong with how `line` ended, or None."""
    stderr = result.stderr
    if "Traceback" in stderr:
        return "a traceback"
    doctor = "doctor" in line
    if result.returncode not in STATUSES | ({1} if doctor else set()):
        return f"exit status {result.returncode}"
    warnings = [text for text in stderr.splitlines() if re.match(r"\S*Warning\b|\s+File \"", text)]
    if warnings:
        return f"Python's own warnings: {warnings[:2]}"
    if result.returncode in (1, 125):
        errors = [text for text in stderr.splitlines() if text.startswith("toolbox: error: ")]
        hints = [text for text in stderr.splitlines() if text.startswith("toolbox: hint: ")]
        if len(errors) != 1 or not hints:
            return f"{len(errors)} error lines and {len(hints)} hint lines"
    return None


@pytest.fixture(scope="module")
def installation(registry, pushed_images, tmp_path_factory):
    from tests.support.installation import ToolboxUnderTest

    root = tmp_path_factory.mktemp("installation")
    return Installation.make(ToolboxUnderTest(root / "setup"), registry, pushed_images["busybox"],
                             pushed_images["shared_a"], root / "installed")


@pytest.mark.parametrize("hostile", HOSTILE)
def test_every_command_fails_with_one_error_line_and_a_hint(installation, registry, tmp_path, hostile):
    installation = installation.copy_to(tmp_path / "installed")
    env, cwd, delete_cwd, undo = _hostile(hostile, installation, tmp_path)
    lines = command_lines(installation, registry)
    assert len(lines) >= 30 and any(line[-2:] == ["volume", "ls"] for line in lines)
    try:
        results = run_lines(lines, env, cwd if not delete_cwd else tmp_path, delete_cwd, tmp_path / "walk")
    finally:
        for step in undo:
            step()
    complaints = [f"{' '.join(os.path.basename(word) for word in line)}: {complaint}\n{result.stderr}"
                  for line, result in zip(lines, results) if (complaint := _complaint(line, result))]
    assert not complaints, "\n".join(complaints)
    if delete_cwd:  # the commands that need the current directory say so
        for words in (["add", "yq"], ["list"], ["run", "jq", "-n", "1"]):
            result = results[lines.index(words)]
            assert (result.returncode == 125
                    and "the current directory no longer exists" in result.stderr), (words, result.stderr)
        shim = results[-1]
        assert shim.returncode == 125 and "the current directory no longer exists" in shim.stderr, shim.stderr
    if hostile == "cwd read-only":  # `add` in a directory you cannot write: the file, and the way out
        result = results[lines.index(["add", "yq"])]
        assert (f"cannot write {installation.project}/toolbox.toml: permission denied"
                in result.stderr), result.stderr
        assert "--global" in result.stderr


# -- help and usage errors ------------------------------------------------------------------------
def cli(toolbox, *args):
    return subprocess.run([sys.executable, "-m", "toolbox", *args], env=toolbox.env, cwd=toolbox.root,
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=120)


def test_help_is_asked_for_with_h_help_or_the_help_command(toolbox):
    full = cli(toolbox, "--help")
    assert (full.returncode == 0 and full.stdout.startswith("Usage: toolbox [OPTIONS] COMMAND")
            and full.stderr == "")
    for spelling in (["-h"], ["help"], []):
        asked = cli(toolbox, *spelling)
        assert (asked.returncode, asked.stdout, asked.stderr) == (0, full.stdout, ""), spelling
    assert "  help " in full.stdout  # listed among the commands
    for words, _command in all_commands():
        if words in (("run",), ("exec",)):  # parsed on the launch path, with docker's usage line
            continue
        page = cli(toolbox, *words, "--help")
        assert (page.returncode == 0
                and page.stdout.startswith(f"Usage: toolbox {' '.join(words)} ")), (words, page.stderr)
        assert cli(toolbox, *words, "-h").stdout == page.stdout == cli(toolbox, "help", *words).stdout, words
        # The usual notation: NAME, [NAME], NAME..., --option VALUE; not typer's {name} or <type>.
        assert not re.search(r"[{}]|<(str|int|bool|list\[\w+\])>", page.stdout), (words, page.stdout)
    for command in ("run", "exec"):
        own_help = cli(toolbox, command, "--help")
        assert own_help.returncode == 0 and cli(toolbox, "help", command).stdout == own_help.stdout != ""
        assert own_help.stdout.startswith(f"usage: toolbox {command} [OPTIONS]")
    pull = cli(toolbox, "help", "pull").stdout
    assert "Usage: toolbox pull [OPTIONS] REFERENCE\n" in pull and "--platform OS/ARCH[/VARIANT]" in pull
    assert "Usage: toolbox rmi [OPTIONS] REFERENCE...\n" in cli(toolbox, "rmi", "-h").stdout
    assert "Usage: toolbox lock [OPTIONS] [TOOL]...\n" in cli(toolbox, "lock", "-h").stdout


@pytest.mark.parametrize("args, error, hint", [
    (["imgaes"], "unknown command 'imgaes'", "did you mean images? `toolbox --help` lists its commands"),
    (["help", "imgaes"], "unknown command 'imgaes'", "did you mean images?"),
    (["--debug", "pul", "x"], "unknown command 'pul'", "did you mean pull?"),
    (["volume", "lss"], "unknown command 'lss' for toolbox volume",
     "did you mean ls? `toolbox volume --help` lists its commands"),
    (["frobnicate"], "unknown command 'frobnicate'", "`toolbox --help` lists its commands"),
    (["images", "--jsn"], "unknown option --jsn for toolbox images",
     "did you mean --json? `toolbox images --help`"),
    (["--verbose", "images"], "unknown option --verbose for toolbox", "`toolbox --help`"),
    (["pull"], "toolbox pull: missing argument 'REFERENCE'",
     "`toolbox pull --help` shows its arguments and options"),
    (["login", "x"], "toolbox login needs a terminal to ask for the user name", "--password-stdin"),
], ids=lambda value: " ".join(value) if isinstance(value, list) else "")
def test_usage_errors_are_one_error_line_with_a_hint(toolbox, args, error, hint):
    result = cli(toolbox, *args)
    assert result.returncode == 125 and result.stdout == ""
    assert result.stderr.splitlines()[0] == f"toolbox: error: {error}", result.stderr
    assert (result.stderr.splitlines()[1].startswith("toolbox: hint: ")
            and hint in result.stderr.splitlines()[1]), result.stderr
    assert len(result.stderr.splitlines()) == 2


# -- completion ----------------------------------------------------------------------------------
BASH_COMPLETE = '''eval "$(toolbox shell-init bash)"
while IFS= read -r line; do
    read -r -a COMP_WORDS <<< "$line"
    [ "${line: -1}" = " " ] && COMP_WORDS+=("")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMPREPLY=()
    _toolbox_completion toolbox
    printf '%s\\t%s\\n' "$line" "${COMPREPLY[*]}"
done'''
FISH_COMPLETE = '''toolbox shell-init fish | source
while read -l line
    printf '%s\\t%s\\n' "$line" (string join ' ' (complete -C "$line" | string replace -r '\\t.*' ''))
end'''


@pytest.mark.needs_userns_overlay  # a named container
@pytest.mark.parametrize("shell", [pytest.param(shell, marks=pytest.mark.needs_program(shell))
                                   for shell in ("bash", "fish")])
def test_completion_offers_tools_images_containers_and_volumes(toolbox, registry, pushed_images, shell):
    toolbox.trust(registry)
    image = pushed_images["busybox"].reference
    for args in (("pull", image), ("run", "--name", "dev", image, "true"),
                 ("run", "-v", "data:/data", image, "true"), ("shim", "install", "jq")):
        done = cli(toolbox, *args)
        assert done.returncode == 0, (args, done.stderr)
    expected = {"toolbox rmi ": [image], "toolbox inspect ": [image], "toolbox rm ": ["dev"],
                "toolbox volume rm ": ["data"], "toolbox volume inspect ": ["data"], "toolbox add j": ["jq"],
                "toolbox add jq@": ["jq@1.7.1"], "toolbox shim remove ": ["jq"],
                "toolbox recipes show pyth": ["python", "python3", "python3.10", "python3.11", "python3.12",
                                              "python3.13"],
                "toolbox run --name ": ["dev"], "toolbox run -e A=1 j": ["jq"],
                "toolbox run 127.0.0.1": [image], "toolbox help vol": ["volume"],
                "toolbox help volume ": [words[1] for words, _command in all_commands()
                                         if words[0] == "volume"],
                "toolbox shell-init ": ["bash", "fish", "zsh"], "toolbox im": ["images"],
                "toolbox pull j": ["jq"], "toolbox pull 127.0.0.1": [image],}
    if shell == "bash":  # the tool's own arguments: nothing of toolbox's (fish then offers file names)
        expected["toolbox run jq "] = []
    script = BASH_COMPLETE if shell == "bash" else FISH_COMPLETE
    result = subprocess.run([shell, "-c", script], input="".join(line + "\n" for line in expected),
                            env=toolbox.env, cwd=toolbox.root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    offered = dict(line.split("\t") for line in result.stdout.splitlines())
    for line, words in expected.items():
        assert sorted(offered[line].split()) == sorted(words), (line, offered[line])
