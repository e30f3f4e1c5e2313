"""Invalid evaluation settings reported with the flags the user typed, never the internal field names.

``mlmodelscope evaluate`` builds ``EvaluationSettings`` and ``RunSpec`` from its options; pydantic names the fields
(``target_qps``), the user wrote ``--target-qps``. ``OPTION_OF_FIELD`` maps each field to its flag and to how to fix
a bad value, and ``naming_options`` turns a ValidationError into one EvaluationError in the user's terms.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from pydantic import ValidationError

from mlmodelscope.core.errors import EvaluationError


@dataclass(frozen=True)
class _Option:
    flag: str
    fix: str


# The `evaluate` option behind each field of EvaluationSettings and RunSpec, and how to fix a bad value: an invalid
# setting is reported with the flag the user typed, never the internal field name. Keep it in step with the options.
OPTION_OF_FIELD: dict[str, _Option] = {
    "model": _Option("--model", "Name a model of `mlmodelscope models list`."),
    "framework": _Option("--framework", "Name frameworks of `mlmodelscope frameworks list`, comma-separated."),
    "dataset": _Option("--dataset", "Name a dataset of `mlmodelscope datasets list`, or leave it out."),
    "scenario": _Option("--scenario", "Choose single-stream, multi-stream, server or offline."),
    "mode": _Option("--mode", "Choose accuracy, performance or both."),
    "batch_size": _Option("--batch-size", "Give an integer from 1 to 65536, or a list such as 1,2,4,8."),
    "warmup_queries": _Option("--warmup", "Give a number of untimed calls, 0 or more (10 by default)."),
    "min_duration_s": _Option("--min-duration", "Give a duration such as 10s, 500ms or 2m."),
    "max_duration_s": _Option("--max-duration", "Give a duration above 0 and not below --min-duration, or omit it."),
    "min_query_count": _Option("--min-queries", "Give a query count of 1 or more."),
    "max_query_count": _Option("--max-queries", "Give a query count not below --min-queries, or omit it."),
    "target_qps": _Option("--target-qps", "Give the server scenario's arrival rate in queries/s, e.g. 100."),
    "expected_latency_ms": _Option("--expected-latency-ms", "Give milliseconds above 0, or omit it (measured)."),
    "expected_qps": _Option("--expected-qps", "Give samples/s above 0, or omit it (measured)."),
    "latency_bound_ms": _Option("--latency-bound-ms", "Give milliseconds above 0, e.g. 50, or omit it (100 ms)."),
    "samples_per_query": _Option("--samples-per-query", "Give a number of samples of 1 or more."),
    "seeds": _Option("--seed", "Give an integer, or omit it for MLPerf's official seeds."),
    "device": _Option("--device", "Choose cpu, gpu or fpga."),
    "intra_op_threads": _Option("--threads", "Give 1 or more threads, or omit it for the framework's default."),
    "trace_level": _Option("--trace-level", "Choose a level of `mlmodelscope evaluate --help`."),
    "framework_trace_max_calls": _Option("--framework-trace-calls", "Give a number of calls of 1 or more (1000)."),
    "performance_sample_count": _Option(
        "--performance-sample-count", "Give a number of dataset items of 1 or more, or omit it (up to 1024)."
    ),
    "sample_cache": _Option("--sample-cache", "Pass --sample-cache or --no-sample-cache."),
    "output_dir": _Option("--output", "Give a writable path for the result JSON."),
}
_BOUNDS = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
_BOUND_CTX = {"greater_than": "gt", "greater_than_equal": "ge", "less_than": "lt", "less_than_equal": "le"}


def _option_of(location: tuple[int | str, ...]) -> _Option | None:
    return next((OPTION_OF_FIELD[p] for p in location if isinstance(p, str) and p in OPTION_OF_FIELD), None)


def _with_flags(text: str) -> str:
    """Field names in a message (``target_qps``) replaced by their flags; a flag already given after one, in
    parentheses, is not repeated. Only snake_case names: 'mode' or 'scenario' are also plain words."""
    for name, option in OPTION_OF_FIELD.items():
        if "_" not in name:
            continue
        text = re.sub(rf"\b{name}\b(?: \({re.escape(option.flag)}\))?", option.flag, text)
    return text


def _number(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _first_option_named(text: str) -> _Option | None:
    """The option whose flag comes first in ``text`` (the one a rule across fields is about)."""
    named = [(match.start(), o) for o in OPTION_OF_FIELD.values() if (match := re.search(rf"{o.flag}\b", text))]
    return min(named, key=lambda pair: pair[0])[1] if named else None


def options_error(error: ValidationError) -> EvaluationError:
    """The invalid settings as the user wrote them: ``--target-qps must be > 0 (got -1.0)``, with the fix."""
    problems: list[str] = []
    fixes: list[str] = []
    for problem in error.errors():
        option = _option_of(problem["loc"])
        bound = _BOUNDS.get(problem["type"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        if option is not None and bound is not None:
            limit = problem.get("ctx", {}).get(_BOUND_CTX[problem["type"]])
            problems.append(f"{option.flag} must be {bound} {_number(limit)} (got {_number(problem['input'])})")
        elif option is not None:
            problems.append(f"{option.flag}: {_with_flags(message)}")
        else:  # a rule across fields: name every flag it mentions
            problems.append(_with_flags(message))
            option = _first_option_named(problems[-1])
        if option is not None and option.fix not in fixes:
            fixes.append(option.fix)
    return EvaluationError("; ".join(problems) + ".", hint=" ".join(fixes))


@contextlib.contextmanager
def naming_options() -> Iterator[None]:
    try:
        yield
    except ValidationError as e:
        raise options_error(e) from e
