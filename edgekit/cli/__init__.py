"""edgekit: take lightweight CNNs to the edge.

  edgekit models                                        list the model zoo
  edgekit info mobilenet_v3 --alpha 0.75 --res 224      params and multiply-adds, per stage
  edgekit export mobilenet_v3 --alpha 0.75 --res 192    fuse Conv-BN, export ONNX + TorchScript, self-check
  edgekit verify model.onnx                             numerical equivalence against the PyTorch reference
  edgekit bench model.onnx --provider cpu               latency / throughput (ORT, OpenVINO, ExecuTorch, torch)
  edgekit quantize model.onnx --calib images/           INT8 (or --to fp16) with agreement, accuracy, latency
  edgekit eval model_int8.onnx --data images/val        top-1/top-5 accuracy on a labelled image folder
  edgekit compare mobilenet_v3 --alpha 0.75 --res 192   every format x precision x runtime, verified and timed
  edgekit sweep mobilenet_v2 --alphas 0.5,1.0 --ray     models x widths x resolutions, exported and timed

Exit codes: 0 ok, 1 failure (including verification failed), 2 usage error, 130 interrupted (Ctrl-C),
143 terminated (SIGTERM).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Sequence

#: subcommand -> module under edgekit.cli; each module has add_arguments(parser) and run(args) -> int,
#: and its docstring is the subcommand's --help text (first line = one-line summary).
SUBCOMMANDS = ("models", "info", "export", "verify", "bench", "quantize", "eval", "compare", "sweep")


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line (plus the hint) and exit 2, like every other edgekit error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}; see '{self.prog} --help'\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edgekit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"edgekit {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in SUBCOMMANDS:
        module = importlib.import_module(f"edgekit.cli.{name}")
        doc = (module.__doc__ or "").strip()
        sub = subparsers.add_parser(
            name,
            help=doc.splitlines()[0] if doc else None,
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point: parse, dispatch, and turn user errors into one line on stderr."""
    from ..errors import EdgekitError, Terminated

    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    previous = _handle_sigterm()
    try:
        code = args._run(args)
    except EdgekitError as exc:
        sys.stderr.write(f"edgekit {args.command}: error: {exc}\n")
        code = exc.exit_code
    except Terminated:
        sys.stderr.write(f"edgekit {args.command}: terminated (SIGTERM); nothing half-written was left behind\n")
        code = Terminated.exit_code
    except KeyboardInterrupt:
        sys.stderr.write(f"edgekit {args.command}: interrupted; nothing half-written was left behind\n")
        code = 130
    except BrokenPipeError:
        # `edgekit models | head`: the reader went away; that is not an error of ours.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = 0
    except OSError as exc:  # a file-system failure no check foresaw (a disk that filled up, a file that vanished)
        where = f" ({exc.filename})" if getattr(exc, "filename", None) else ""
        sys.stderr.write(f"edgekit {args.command}: error: {exc.strerror or exc}{where}; check the disk and the "
                         "paths, then run again\n")
        code = 1
    except MemoryError:
        sys.stderr.write(f"edgekit {args.command}: error: out of memory; use a smaller --res, --batch or model\n")
        code = 1
    finally:
        _restore_sigterm(previous)
    sys.stdout.flush()
    return int(code or 0)


def _handle_sigterm() -> object:
    """SIGTERM unwinds like Ctrl-C (every ``finally`` and cleanup runs), instead of killing the process mid-write."""
    import signal
    import threading

    from ..errors import raise_terminated

    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, raise_terminated)
        return previous or signal.SIG_DFL
    return None


def _restore_sigterm(previous: object) -> None:
    import signal

    if previous is not None:
        signal.signal(signal.SIGTERM, previous)  # type: ignore[arg-type]


def entry() -> None:
    sys.exit(main())
