"""The project's exception types.

Every error a user can cause (a bad config value, a missing file, weights that
cannot be fetched) is raised as a ``TransferLabError`` whose message names the
problem and the fix; the entry point prints it on one line and exits non-zero.
"""


class TransferLabError(Exception):
    """Base class: the message is shown to the user as it is, without a traceback."""


class InputProblemsError(TransferLabError):
    """Several problems with a run's input, found at once (``checks.Problems``): one line each."""

    def __init__(self, errors: list[TransferLabError]) -> None:
        self.errors = tuple(errors)
        super().__init__("\n".join(str(e) for e in self.errors))


class ConfigError(TransferLabError):
    """A config value is invalid or two values cannot be combined."""


class ImageError(TransferLabError):
    """An image is missing, unreadable or unsafe to decode."""


class FetchError(TransferLabError):
    """A remote file could not be downloaded or failed its checksum."""


class WeightsError(TransferLabError):
    """Model weights are missing, unreadable or do not fit the architecture."""


class DataError(TransferLabError):
    """A dataset is missing, empty or inconsistent."""


class ExportError(TransferLabError):
    """An exported model does not reproduce the PyTorch model's outputs."""


class VideoError(TransferLabError):
    """A video or frame folder is missing, empty, or cannot be decoded or encoded."""


class DivergedError(TransferLabError):
    """Training's loss stopped being a finite number: the run stops before it saves such weights."""
