"""The `toolbox` command's entry point. `toolbox run` and `toolbox exec` go straight to the light
launch path; everything else loads the full CLI (typer)."""

import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "run":
        from toolbox.hot.launch import main as run

        return run(argv[1:])
    if argv and argv[0] == "exec":
        from toolbox.hot.join import main as exec_in_service

        return exec_in_service(argv[1:])
    try:
        from toolbox.cli.app import main as cli  # ~0.1 s of imports: a Ctrl-C may land in them
    except KeyboardInterrupt:
        return 130
    return cli(argv)


if __name__ == "__main__":
    sys.exit(main())
