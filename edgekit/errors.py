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
    """The requested runtime, execution provider or device is not installed or not really active."""


class ResourceLimit(BadArgument):
    """The request would need more memory than is sensible (absurd resolution or batch)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a container stop, a CI timeout, ``kill``): handled like Ctrl-C (everything cleans up), exit 143."""

    exit_code = 143


def raise_terminated(signum: int, frame: object) -> None:
    """The SIGTERM handler the CLI installs: unwind like a Ctrl-C, so staging folders and temp files go away."""
    raise Terminated()


class MissingExtra(EdgekitError):
    """An optional dependency (an extra such as ``.[executorch]``) is not installed."""


def first_line(exc: BaseException, limit: int = 160) -> str:
    """The first non-empty line of an exception's message (its type name when it has none), cut at ``limit``.

    Third-party errors (ONNX Runtime, torch, protobuf) often carry pages of C++ context; a user sees this one line.
    """
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    line = lines[0] if lines else type(exc).__name__
    return line if len(line) <= limit else line[: limit - 3] + "..."


def require(module: str, extra: str, what: str) -> object:
    """Import an optional dependency, or raise MissingExtra naming the extra that installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(
            f"{what} needs the optional package {module.split('.')[0]!r}, which is not installed "
            f"({first_line(exc, 80)}); install it with: pip install -e '.[{extra}]'"
        ) from None
