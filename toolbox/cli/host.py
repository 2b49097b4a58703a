"""toolbox on this machine: `doctor` checks what the host lets it do, `self uninstall` removes it."""

import typer

from toolbox.cli import common
from toolbox.cli.render import print_json, print_table
from toolbox.cli.support import HelpCommand

self_app = typer.Typer(help="toolbox itself: `toolbox self uninstall`.", no_args_is_help=True)


def register(app):
    common.add_commands(app, doctor)


DOCTOR_MARKS = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}


def doctor(as_json: bool = common.JSON_OPTION):
    """Check what this host lets toolbox do, with the fix for each problem (exit 1 if a check fails)."""
    from toolbox.errors import ChecksFailed
    from toolbox.layout import Layout
    from toolbox.ops.doctor import failed, report_json, run_checks

    checks = run_checks(Layout.from_env())
    if as_json:
        print_json(report_json(checks))
    else:
        width = max(len(check.name) for check in checks)
        for check in checks:
            print(f"{DOCTOR_MARKS[check.status]}  {check.name.ljust(width)}  {check.detail}")
            if check.fix and check.status != "ok":
                print(f"{' ' * (width + 8)}fix: {check.fix}")
    broken = failed(checks)
    if broken:
        names = ", ".join(check.name for check in broken)
        raise ChecksFailed(f"{len(broken)} check{'s' if len(broken) > 1 else ''} failed: {names}",
                           hint="each failed check names its fix")


@self_app.command("uninstall", cls=HelpCommand)
def self_uninstall(
    dry_run: bool = typer.Option(False, "--dry-run", "-n",
                                 help="List what would be removed, and remove nothing."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Remove the config directory too, without asking."),
):
    """Remove toolbox: its launcher and virtualenv (what scripts/install made), the shims, the
    store, the data directory (volumes, kept containers, trust), and, when you say so, the config
    directory; then name the rc file lines to remove."""
    from toolbox.layout import Layout
    from toolbox.ops import shimgen as shims
    from toolbox.ops import uninstall
    from toolbox.ops.progress import human_bytes
    from toolbox.ops.usage import tilde
    from toolbox.prompt import can_ask, confirm_on_terminal

    layout = Layout.from_env()
    found = uninstall.parts(layout)
    config = next((part for part in found if part.what == "config"), None)
    ask = config is not None and not yes and not dry_run and can_ask()
    config_note = ("" if yes else " (only with --yes, or if you answer yes)" if dry_run else
                   " (if you answer yes below)" if ask else " (kept: no terminal to ask; --yes removes it)")
    print("Would remove:" if dry_run else "Removing:")
    print_table([(f"  {part.what}", tilde(part.path) + (f" ({part.detail})" if part.detail else ""),
                  human_bytes(part.size) + (config_note if part is config else "")) for part in found]
                or [("  nothing: toolbox left nothing here",)])
    keep_config = config is not None and not yes and (not ask or not confirm_on_terminal(
        f"remove your configuration too, {tilde(config.path)} (config.toml, your recipes, global pins)?"))
    lines = uninstall.rc_lines()
    rc, line = shims.rc_file_and_line()
    if not dry_run:  # the venv this runs from goes last, and nothing is imported after it
        for part in sorted(found, key=lambda part: uninstall.REMOVAL_ORDER.index(part.what)):
            if part is not config or not keep_config:
                uninstall.remove(part)
        print("Removed toolbox" + (f"; kept {tilde(config.path)} (remove it by hand, or run this again with "
                                   "--yes)" if keep_config else ""))
    if lines:
        print("Remove the line that runs `toolbox shell-init` from your shell's startup file:"
              if len(lines) == 1 else
              "Remove the lines that run `toolbox shell-init` from your shells' startup files:")
        for name, number, text in lines:
            quiet = (" (it does nothing once toolbox is gone)" if ("[ -x " in text or "test -x " in text)
                     else "")
            print(f"  {name}:{number}: {text.strip()}{quiet}")
    else:
        print("If you added a line that runs `toolbox shell-init` to your shell's startup file, remove it "
              f"({rc}: {line})")
