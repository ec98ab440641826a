"""The README and the help texts keep up with the code (sqlite-utils' habit): every command and
option has help text and is mentioned in the README, and every config key is documented."""

from pathlib import Path

import click
import pytest

from montaged.cli import cli
from montaged.config import describe, settings_from_dict

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def commands(group=cli, prefix="montaged"):
    for name, cmd in group.commands.items():
        full = f"{prefix} {name}"
        yield full, cmd
        if isinstance(cmd, click.Group):
            yield from commands(cmd, full)


ALL = list(commands())


@pytest.mark.parametrize("name,cmd", ALL, ids=[n for n, _ in ALL])
def test_every_command_has_help_and_is_in_the_readme(name, cmd):
    assert cmd.help and len(cmd.help.strip()) > 20, f"{name} has no help text"
    assert f"`{name}" in README, f"{name} is not documented in README.md"


@pytest.mark.parametrize("name,cmd", ALL, ids=[n for n, _ in ALL])
def test_every_option_has_help_and_is_in_the_readme(name, cmd):
    for param in cmd.params:
        if not isinstance(param, click.Option) or param.name == "help":
            continue
        assert param.help, f"{name} {param.opts} has no help text"
        documented = [o for o in param.opts if o in README]
        assert documented, f"{name}: none of {param.opts} is mentioned in README.md"


def test_every_config_key_is_in_the_readme():
    for label, *_ in describe(settings_from_dict({})):
        assert f"`{label}`" in README, f"{label} is not in README.md"


def test_readme_names_the_two_setup_commands():
    assert "make demo" in README and "make test" in README
