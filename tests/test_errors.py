"""One error path: every error type lives in toolbox/errors.py, and report() is how each edge
(the CLI, `toolbox run`, a shim) tells the user: one error line, one hint line, an exit status."""

import errno
import importlib
import io

from toolbox import errors
from toolbox.errors import (
    EXIT_CANNOT_RUN,
    EXIT_NOT_FOUND,
    EXIT_TOOLBOX_FAILED,
    CommandNotExecutable,
    CommandNotFound,
    ImageNotStored,
    RuntimeStepError,
    ToolboxError,
    report,
)
from toolbox.layout import Layout

from tests.support.architecture import modules


def all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from all_subclasses(sub)


def test_every_error_type_is_defined_in_errors():
    for name in modules():
        if not name.endswith("__main__") and not name.endswith("_sys_build"):
            importlib.import_module(name)
    defined_elsewhere = sorted(f"{cls.__module__}.{cls.__name__}" for cls in all_subclasses(ToolboxError)
                               if cls.__module__ != "toolbox.errors" and cls.__module__.startswith("toolbox"))
    assert defined_elsewhere == []


def reported(err, **kwargs):
    stream = io.StringIO()
    status = report(err, stream=stream, **kwargs)
    return status, stream.getvalue()


def test_a_toolbox_error_is_its_message_and_hint_with_its_status():
    assert reported(ImageNotStored("jq:1.7 is not stored", hint="pull it: toolbox pull jq:1.7")) == (
        EXIT_TOOLBOX_FAILED, "toolbox: error: jq:1.7 is not stored\ntoolbox: hint: pull it: toolbox pull "
                             "jq:1.7\n")
    assert reported(ToolboxError("no hint")) == (EXIT_TOOLBOX_FAILED, "toolbox: error: no hint\n")


def test_the_containers_failures_keep_env1s_statuses():
    assert reported(CommandNotFound("jqq")) == (
        EXIT_NOT_FOUND, "toolbox: error: command not found in the image: jqq\n"
                        "toolbox: hint: check the command name, or the image's PATH\n")
    assert reported(CommandNotExecutable("/bin/x: Permission denied")) == (
        EXIT_CANNOT_RUN, "toolbox: error: cannot execute /bin/x: Permission denied\n")
    step = RuntimeStepError("pivot_root /tmp/root", OSError(errno.EINVAL, "Invalid argument"))
    assert (step.step, step.errno) == ("pivot_root /tmp/root", errno.EINVAL)
    assert reported(step)[1] == ("toolbox: error: cannot start the container: pivot_root /tmp/root: "
                                 "Invalid argument\n")


def test_an_os_error_names_the_file_and_a_bug_says_it_is_one(tmp_path):
    layout = Layout.from_env({"TOOLBOX_HOME": str(tmp_path / "home")})
    status, text = reported(PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "x")),
                            layout=layout)
    assert (status == EXIT_TOOLBOX_FAILED and text.startswith("toolbox: error: ")
            and str(tmp_path / "x") in text)
    status, text = reported(KeyError("settings"))
    assert status == EXIT_TOOLBOX_FAILED
    assert text == f"toolbox: error: unexpected KeyError: 'settings'\ntoolbox: hint: {errors.BUG_HINT}\n"
    assert reported(KeyError("x"), bug_hint="run it with --debug")[1].endswith("toolbox: hint: run it with "
                                                                               "--debug\n")
