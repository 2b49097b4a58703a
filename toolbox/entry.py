"""The `toolbox` command's entry point. `toolbox run` goes straight to the light launch path;
everything else loads the full CLI (typer)."""

import sys


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "run":
        from .launch import main as run

        return run(argv[1:])
    from .cli import main as cli

    return cli(argv)


if __name__ == "__main__":
    sys.exit(main())
