"""Where the repository, its assets and the installed ``mlmodelscope`` command are, for every test and helper.

One definition, so that no module computes the repository from its own depth below it (``Path(__file__)``).
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "assets"
# The command as a user runs it: the entry point installed next to this interpreter.
CLI = Path(sys.executable).parent / "mlmodelscope"
