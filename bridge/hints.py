"""The commands that error messages suggest, written so that they work as printed.

A bare ``bridge`` may not be this program: iproute2 installs ``/usr/sbin/bridge`` on most
Linux systems, ahead of a virtualenv's scripts on many PATHs. So a hint names the program the
way this process was started: the full path of the console script (``bridge`` or its alias
``eth-bridge``), else ``python -m bridge`` with this interpreter.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def command(args: str) -> str:
    """``args`` (``"init --home DIR"``) as a command line that runs this bridge."""
    program = Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    if program is not None and program.name in ("bridge", "eth-bridge"):
        prefix = shlex.quote(str(program.resolve()))
    else:
        prefix = f"{shlex.quote(sys.executable)} -m bridge"
    return f"{prefix} {args}"
