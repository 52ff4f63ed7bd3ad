"""The `tokenwave` command: the app, its own `version` and `demo`, and the command group each package registers
(its ``commands.register(app)``). Every subcommand has --help; errors print one line with the fix and exit 2."""
from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console

from tokenwave import __version__
from tokenwave.brief import commands as brief_commands
from tokenwave.codec import commands as codec_commands
from tokenwave.data import commands as data_commands
from tokenwave.errors import TokenwaveError
from tokenwave.eval import commands as eval_commands
from tokenwave.safety import commands as safety_commands
from tokenwave.serve import commands as serve_commands
from tokenwave.tasks import commands as task_commands
from tokenwave.train import commands as train_commands

app = typer.Typer(help="tokenwave: audio generation on neural codec tokens.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
console = Console()


@app.command()
def version() -> None:
    """Print the tokenwave version."""
    console.print(__version__)


@app.command()
def demo(
    out: Path = typer.Option(Path("demo"), "--out", "-o", help="Folder for the page, audio and images."),
    rebuild: bool = typer.Option(False, help="Rebuild the demo datasets even if present."),
) -> None:
    """Render examples of each domain and write OUT/index.html with players and spectrograms."""
    from tokenwave.demo import render_demo  # lazy: keeps --help fast (numpy, matplotlib)

    index = render_demo(out, rebuild=rebuild)
    console.print(f"open {index.absolute()} in a browser")


# The order of registration is the order of `tokenwave --help`: commands first, then groups.
for commands in (data_commands, train_commands, codec_commands,  # data, train, codec
                 eval_commands, task_commands, serve_commands,  # eval, listen; tts, music, sfx; serve
                 brief_commands, safety_commands):  # brief; detect, voices
    commands.register(app)


def main() -> None:
    """Run the `tokenwave` command; a TokenwaveError prints one line with its fix and exits 2."""
    try:
        app()
    except TokenwaveError as err:
        Console(stderr=True).print(f"[bold red]error:[/] {err.one_line()}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        Console(stderr=True).print("interrupted; nothing half-written was kept")
        sys.exit(130)


if __name__ == "__main__":
    main()
