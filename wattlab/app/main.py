"""`wattlab` with no arguments: open the console.

Only Textual and wattlab's light modules are imported here; engines and meters never are (the
console reads meters through a monitor child process and runs inference in detached runners).
"""

from __future__ import annotations

import sys


def run_console(db: str | None) -> int:
    """Run the console on `db` (default: the data dir's database). Returns the exit code.

    A sweep started from the console keeps running after it quits; the next `wattlab` attaches.
    Problems that stop the console from opening are one message with the fix, never a traceback.
    """
    if not sys.stdin.isatty() or not sys.stdout.isatty():
        print(
            "error: the console needs an interactive terminal\n"
            "  fix: run `wattlab` in a terminal (over SSH: ssh -t), or use the commands: wattlab --help",
            file=sys.stderr,
        )
        return 2
    try:
        from wattlab.app.app import WattlabApp

        app = WattlabApp(db=db)
    except OSError as exc:
        print(
            f"error: cannot open the wattlab data dir: {exc}\n"
            "  fix: set WATTLAB_HOME to a writable directory",
            file=sys.stderr,
        )
        return 2
    code = app.run()
    if app.left_running:
        print(
            f"sweep {app.left_running} keeps running in the background; type `wattlab` to watch it again "
            f"(or `wattlab attach {app.left_running}`)"
        )
    return int(code or 0)
