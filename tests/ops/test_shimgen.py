"""The files toolbox writes for shells come from the templates in shims/ (data, not code)."""

import os

import pytest

from toolbox.hot.shim import MARKER, is_shim
from toolbox.layout import shipped_dir
from toolbox.ops import shimgen
from toolbox.ops.uninstall import install_launcher_venv


def test_the_templates_are_shipped_data_beside_the_recipes():
    assert sorted(os.listdir(shipped_dir("shims"))) == ["init.bash.in", "init.fish.in", "init.zsh.in",
                                                        "preload.in", "shim.in", "toolbox.in"]
    assert os.path.isdir(shipped_dir("recipes"))


@pytest.mark.parametrize("shell", shimgen.SHELLS)
def test_shell_init_is_its_template_filled_in_without_template_comments(tmp_path, shell):
    layout_dir = tmp_path / "it's shims"  # a quote in the name: filled in quoted for the shell
    text = shimgen.render(f"init.{shell}.in", SHIMS=shimgen._fish_quote(str(layout_dir)) if shell == "fish"
                          else shimgen._sh_quote(str(layout_dir)), LAUNCHER_DIR=None)
    assert "##" not in text and "@" not in text
    assert "_toolbox_shims_first" in text
    assert "command -" not in text  # the launcher's line is optional: left out without a launcher
    with_launcher = shimgen.render(f"init.{shell}.in", SHIMS="/s", LAUNCHER_DIR="/opt/bin")
    assert (with_launcher.splitlines()[-1].startswith("command -")
            and with_launcher.rstrip().endswith("/opt/bin"))


def test_a_placeholder_left_without_a_value_is_an_error():
    with pytest.raises(ValueError, match="SHIMS"):
        shimgen.render("init.bash.in", LAUNCHER_DIR=None)


def test_a_shim_is_python_that_is_shims_recognise(tmp_path):
    text = shimgen.shim_text("python3.11")
    compile(text, "shim", "exec")
    assert (MARKER in text[:200] and "main('python3.11')" in text and text.startswith("#!")
            and " -IS\n" in text)
    path = tmp_path / "python3.11"
    path.write_text(text)
    assert is_shim(str(path))


def test_the_launcher_scripts_install_writes_is_the_one_uninstall_recognises(tmp_path):
    venv = tmp_path / "share" / "toolbox" / "venv"
    launcher = tmp_path / "toolbox"
    launcher.write_text(shimgen.launcher_text(str(venv / "bin" / "python3"),
                                              str(venv / "lib" / "site-packages")))
    compile(launcher.read_text(), "launcher", "exec")
    assert install_launcher_venv(str(launcher)) == str(venv)
