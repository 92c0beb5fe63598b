"""The dsrdiag entry point: argv -> the command (cli/commands.py) -> an exit code; one error handler.

Why one handler: every DsrdiagError becomes `dsrdiag: error: <one line>` on stderr and its
documented exit code (docs/exit-codes.md); an unexpected exception is reported the same way with
exit 2 and a request to report the bug, never as a traceback (set DSRDIAG_DEBUG=1 to see it).

Why this module holds nothing else: it is what the console script and `python -m dsrdiag` import
first, so that run() can start before the command line is loaded (see run()).
"""

import gc
import os
import sys

from dsrdiag.cli.shutdown import Stopped, ignore_signals, stop_on_signals
from dsrdiag.core.errors import DsrdiagError
from dsrdiag.core.exitcodes import ExitCode


def run(argv: list[str] | None = None) -> int:
    """Console-script entry: run the app and map every error to one line and an exit code.

    The garbage collector is off while the command line and its modules load (the group's callback
    turns it back on, cli/commands.py): the start-up makes no garbage cycles, and each pass over
    the thousands of objects that loading creates is time spent on nothing, ~2% of a run on a small
    capture. In-process callers (argv given) get the collector back as it was."""
    collecting = gc.isenabled()
    gc.disable()
    import typer

    from dsrdiag.cli.commands import command
    from dsrdiag.core.safetext import terminal as visible

    if argv is None:
        stop_on_signals()
    try:
        rv = command().main(args=argv, prog_name="dsrdiag", standalone_mode=False)
        code = rv if isinstance(rv, int) else 0  # click returns typer.Exit's code in this mode
        return _exit(code, argv)
    except typer.Exit as e:
        code = e.exit_code
    except DsrdiagError as e:
        print(f"dsrdiag: error: {visible(e)}", file=sys.stderr)  # names and packet text: escaped
        code = int(e.exit_code)
    except KeyboardInterrupt:
        ignore_signals()
        print("dsrdiag: interrupted", file=sys.stderr)
        code = int(ExitCode.INTERRUPTED)
    except Stopped as e:  # SIGINT, SIGTERM, SIGHUP, SIGQUIT: unwound, files removed at exit
        print(e.message, file=sys.stderr)
        code = e.exit_code
    except Exception as e:
        if type(e).__name__ == "NoArgsIsHelpError" and getattr(e, "ctx", None) is not None:
            print(e.ctx.get_help(), file=sys.stderr)  # bare `dsrdiag` or `dsrdiag analyze`: show help
            return _exit(int(ExitCode.USAGE), argv)
        if hasattr(e, "format_message") and hasattr(e, "exit_code"):
            # click's usage errors (typer vendors click, so match by shape, not class)
            print(f"dsrdiag: error: {e.format_message()}", file=sys.stderr)
            return _exit(int(ExitCode.USAGE), argv)
        # the last line of defence: no traceback for users
        if os.environ.get("DSRDIAG_DEBUG"):
            raise
        print(f"dsrdiag: error: internal error ({type(e).__name__}: {visible(e)}); please report it with the capture", file=sys.stderr)
        code = int(ExitCode.USAGE)
    else:
        code = 0
    finally:
        if argv is not None and collecting:
            gc.enable()
    return _exit(code, argv)


def _exit(code: int, argv) -> int:
    """As the console script (argv None): end the process with `code`, skipping the interpreter's
    teardown. Why: after a large analysis, freeing every record, dict and module one by one took
    ~0.05 s of a 0.6 s run, for memory the process is about to give back whole. Output is flushed
    and the atexit handlers run first (spill files removed, worker processes joined)."""
    if argv is None:
        import atexit

        ignore_signals()  # cleaning up (temporary files, workers): a late signal must not cut it short
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe (`| head`): nothing more can be said there
                pass
        atexit._run_exitfuncs()
        os._exit(code)
    return code
