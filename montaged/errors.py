"""Exceptions whose message is written for the person reading `montaged status`.

Every error that can reach a user derives from MontagedError and carries a message that says
what is wrong in plain words (``not a media file: holiday.mp4``), never a stack trace.
"""


class MontagedError(Exception):
    """Base class: the message is shown to users as it is.

    ``exit_code`` is what the command line exits with when the error ends a command: 1, the
    work failed; 2 (configuration, option values) bad usage."""

    exit_code = 1


class ConfigError(MontagedError):
    """A configuration file is invalid. ``problems`` lists every error found, not just the first."""

    exit_code = 2

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class MediaError(MontagedError):
    """A file cannot be analysed: not media, corrupt beyond use, absurd header values."""


class ManifestError(MontagedError):
    """A folder's manifest is invalid; the message names the key."""


class StoreError(MontagedError):
    """The state database cannot be used (newer schema, locked by another daemon, corrupt)."""


class RenderError(MontagedError):
    """A preview could not be written (disk full, output not writable, no usable footage)."""
