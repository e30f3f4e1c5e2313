"""The process-wide source of span ids: one counter, so ids stay unique across every tracer (run) of one agent.

``next(SPAN_IDS)`` is atomic under the GIL (``itertools.count``), so any thread allocates an id without a lock;
the tracer, its timed spans and its MODEL-row fast path all draw from it.
"""

from __future__ import annotations

import itertools
from typing import Final

SPAN_IDS: Final = itertools.count(1)
