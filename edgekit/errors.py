"""Every error a user can cause is an :class:`EdgekitError`.

The message of each one is a single line that names the problem and the fix; the CLI prints it as
``edgekit: error: <message>`` and exits with :attr:`EdgekitError.exit_code` (1 for a failure, 2 for bad usage).
Internal bugs are not wrapped: they still raise normally with a traceback.
"""

from __future__ import annotations


class EdgekitError(Exception):
    """Base class for user-facing errors. ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1

    def __init__(self, message: str) -> None:
        # One line, always: a multi-line message would break the "one line on stderr" contract.
        super().__init__(" ".join(str(message).split()))


class BadArgument(EdgekitError, ValueError):
    """A value the user passed is invalid (alpha <= 0, res not a number, batch 0, ...)."""

    exit_code = 2


class UnknownModel(BadArgument):
    """The model name is not in the registry (the message carries a did-you-mean suggestion)."""


class BadWeights(EdgekitError):
    """A weights file is missing, unsafe, not a state_dict, or does not match the model."""


class BadModelFile(EdgekitError):
    """An ONNX / TorchScript file is missing, empty, corrupt, or lacks what the command needs."""


class BadConfig(BadArgument):
    """An export preset (YAML) has an unknown key or a bad value."""


class ExportFailed(EdgekitError):
    """An export stage failed; nothing was left behind in the output folder."""


class ToleranceExceeded(EdgekitError):
    """Verification ran and the candidate differs from the reference beyond the tolerances."""


class ProviderUnavailable(EdgekitError):
    """The requested ONNX Runtime execution provider is not installed or not really active."""


class ResourceLimit(BadArgument):
    """The request would need more memory than is sensible (absurd resolution or batch)."""
