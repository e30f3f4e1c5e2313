"""``python -m mlmodelscope.agent --spec run.json``: one agent run without the CLI's dependencies.

Local mode starts every agent this way, with the interpreter the Framework resource names
(``spec.runtime.python``), so a framework's own environment needs only the core, the agent and the framework (the
MXNet environment cannot hold TensorFlow, and needs no web stack). ``mlmodelscope agent run`` is the same run for
images that carry the CLI. Exit codes are ``run_agent``'s: 0 succeeded, 1 evaluation failed, 2 undelivered.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlmodelscope.agent.run import read_run_spec, run_agent
from mlmodelscope.core.errors import MLModelScopeError

EXIT_INTERRUPTED = 130  # the shell's 128 + SIGINT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlmodelscope.agent", description=__doc__.splitlines()[0])
    parser.add_argument("--spec", type=Path, required=True, help="The run spec (JSON) the CLI or operator wrote.")
    parser.add_argument("--output", "-o", type=Path, help="Also write the result JSON here.")
    args = parser.parse_args(argv)
    try:
        spec = read_run_spec(args.spec)
    except MLModelScopeError as e:
        sys.stderr.write(f"error: {e}\n")
        return 1
    try:
        code, result, error = run_agent(spec)
    except KeyboardInterrupt:  # Ctrl-C reaches the whole process group: one line, no traceback
        sys.stderr.write("interrupted: the run was stopped (Ctrl-C)\n")
        return EXIT_INTERRUPTED
    if args.output is not None and result is not None:
        result.write(args.output)
    if error:
        sys.stderr.write(f"error: {error}\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
