"""``python -m mlmodelscope.agent --spec run.json | --spec-env VAR``: one agent run without the CLI's dependencies.

Local mode starts every agent this way (``--spec``, a file), with the interpreter the Framework resource names
(``spec.runtime.python``), so a framework's own environment needs only the core, the agent and the framework (the
MXNet environment cannot hold TensorFlow, and needs no web stack). The operator's Jobs run it with
``--spec-env MLMODELSCOPE_RUN_SPEC`` (the spec inline in the pod's environment: no ConfigMap per Job, no asset
folder). ``mlmodelscope agent run`` is the same run for images that carry the CLI. Exit codes are ``run_agent``'s:
0 succeeded, 1 evaluation failed (or the run spec is unreadable or invalid: nothing is published then), 2
undelivered; a usage error (neither or both of --spec and --spec-env) exits 2 with argparse's usage line.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from mlmodelscope.agent.run import EXIT_FAILED, read_run_spec, run_agent, run_spec_from_env
from mlmodelscope.core.errors import MLModelScopeError

EXIT_INTERRUPTED = 130  # the shell's 128 + SIGINT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mlmodelscope.agent", description=__doc__.splitlines()[0])
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--spec", type=Path, help="The run spec (JSON) the CLI or the collector wrote.")
    where.add_argument("--spec-env", metavar="VAR", help="Read the run spec (JSON) from this environment variable.")
    parser.add_argument("--output", "-o", type=Path, help="Also write the result JSON here.")
    args = parser.parse_args(argv)
    try:
        if args.spec is not None:
            spec, source = read_run_spec(args.spec), str(args.spec)
        else:
            spec, source = run_spec_from_env(args.spec_env, os.environ), f"${args.spec_env}"
    except MLModelScopeError as e:
        sys.stderr.write(f"error: {e.message}\n" + (f"how to fix: {e.hint}\n" if e.hint else ""))
        return EXIT_FAILED
    try:
        code, result, error = run_agent(spec, source)
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
