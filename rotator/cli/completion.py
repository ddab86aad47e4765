"""`rotator completion bash|zsh|fish`, and credential names completed from the config.

Click's own shell completion does the work (the `_ROTATOR_COMPLETE` variable); this
command prints the script to source, so nobody needs to know the variable's protocol.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

import click
from click.shell_completion import CompletionItem, get_completion_class

from rotator.cli.output import say

SHELLS = ("bash", "zsh", "fish")


def credential_names(
    ctx: click.Context, _param: click.Parameter, incomplete: str
) -> list[CompletionItem]:
    """The credentials of the config in use (--config, $ROTATOR_CONFIG, ./rotator.toml).

    Read as plain TOML, without validation: completion must be quick and never print an
    error into the shell; a config that cannot be read completes nothing.
    """
    path = ctx.find_root().params.get("config_path") or os.environ.get("ROTATOR_CONFIG")
    try:
        raw = tomllib.loads(Path(path or "rotator.toml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    entries = raw.get("credentials")
    names = [
        entry["name"]
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict) and isinstance(entry.get("name"), str)
    ]
    return [CompletionItem(name) for name in names if name.startswith(incomplete)]


@click.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str) -> None:
    """Print the shell completion script for SHELL (bash, zsh or fish).

    \b
    Commands, options and credential names (from the config) complete:
      bash  eval "$(rotator completion bash)"   # in ~/.bashrc
      zsh   eval "$(rotator completion zsh)"    # in ~/.zshrc
      fish  rotator completion fish | source    # in ~/.config/fish/config.fish
    """
    root = click.get_current_context().find_root().command  # `rotator` itself, not imported
    cls = get_completion_class(shell)
    if cls is None:  # click knows bash, zsh and fish: the Choice above admits no other
        raise click.UsageError(f"no completion for {shell}")
    say(cls(root, {}, "rotator", "_ROTATOR_COMPLETE").source())
