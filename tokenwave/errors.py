"""Typed errors. Each names what is wrong and how to fix it; the CLI prints them as one line."""
from __future__ import annotations


class TokenwaveError(Exception):
    """Base class: ``message`` says what is wrong, ``fix`` says what to do about it."""

    def __init__(self, message: str, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        return f"{self.message} (fix: {self.fix})" if self.fix else self.message


class AudioFileError(TokenwaveError):
    """An audio file cannot be used."""


class AudioNotFoundError(AudioFileError):
    pass


class EmptyAudioError(AudioFileError):
    pass


class CorruptAudioError(AudioFileError):
    pass


class UnsupportedAudioFormatError(AudioFileError):
    pass


class SampleRateError(TokenwaveError):
    pass


class MissingSystemPackageError(TokenwaveError):
    """A Debian package (an external program or data file) the feature needs is not installed."""

    def __init__(self, what: str, package: str) -> None:
        self.package = package
        super().__init__(
            f"{what} is not installed",
            f"run `apt-get install -y {package}` (or `make deps`) and try again",
        )


class InvalidArgumentError(TokenwaveError):
    """A user-supplied value is out of range or of the wrong kind."""


class OutputPathError(TokenwaveError):
    """An output location cannot be written."""


class DatasetError(TokenwaveError):
    """A dataset folder or manifest is missing or malformed."""
