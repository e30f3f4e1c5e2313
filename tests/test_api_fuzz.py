"""Schemathesis against a real collector (uvicorn on 127.0.0.1) that serves real runs and the edge cases: every
operation of the OpenAPI document fuzzed with positive and negative data, with and without the token, then the
stateful phase (sequences of calls following the document's links). Acceptance: no response >= 500 and no
response that contradicts the document (status, content type, schema, Allow header, auth), over at least 500
generated cases.

The database is a copy of the shared web environment's (real evaluations: a framework-traced run and a batch
sweep) plus ``edge_case_fixtures`` (NaN result, all-zero latencies, cycles, durations near 2**63, a succeeded run
without a result). Generation is derandomized, so a failure reproduces with the same cases.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests import edge_case_fixtures as edges
from tests import web_fixtures

schemathesis = pytest.importorskip("schemathesis", reason="the API fuzz test needs schemathesis (make setup)")
hypothesis = pytest.importorskip("hypothesis", reason="the API fuzz test needs hypothesis (make setup)")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

pytestmark = pytest.mark.slow
TOKEN = "fuzz-token"
EXAMPLES_PER_OPERATION = 10
EXAMPLES_PER_STORED_RUN = 2
MIN_CASES = 500
STATEFUL_SCENARIOS = 25
STATEFUL_STEPS = 6


@dataclass
class FuzzTally:
    """Cases sent and the failures schemathesis' checks reported (operation: message)."""

    cases: int = 0
    failures: list[str] = field(default_factory=list)


def _copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database another process has open (the online backup API)."""
    with sqlite3.connect(source) as live, sqlite3.connect(target) as copy:
        live.backup(copy)


def _real_result(database: Path) -> dict[str, Any]:
    import json

    with sqlite3.connect(database) as connection:
        row = connection.execute("SELECT result FROM runs WHERE status = 'succeeded' AND result IS NOT NULL").fetchone()
    assert row is not None, "the shared environment holds no succeeded run"
    document: dict[str, Any] = json.loads(row[0])
    return document


@dataclass(frozen=True)
class FuzzedCollector:
    url: str
    real_runs: tuple[str, ...]


@pytest.fixture(scope="module")
def fuzzed_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzedCollector]:
    env = web_fixtures.shared_environment()
    folder = tmp_path_factory.mktemp("fuzz")
    database = folder / "collector.db"
    _copy_database(env.data / "collector.db", database)
    url = f"sqlite:///{database}"
    asyncio.run(edges.store_edge_cases(url, _real_result(database)))
    with edges.served_collector(url, folder / "collector.log", token=TOKEN) as served:
        yield FuzzedCollector(served, (env.framework_run, env.sweep_runs[4]))


def _failure_text(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text[:2000]


def _fuzz_operation(
    operation: Any,
    base_url: str,
    headers: dict[str, str],
    mode: Any,
    tally: FuzzTally,
    *,
    run_id: str | None = None,
) -> None:
    """Send generated cases of one operation (``run_id``: with that run id in the path, the rest generated)."""
    fixed = {"path_parameters": {"run_id": run_id}} if run_id is not None else {}
    examples = EXAMPLES_PER_STORED_RUN if run_id is not None else EXAMPLES_PER_OPERATION

    @given(case=operation.as_strategy(generation_mode=mode, **fixed))
    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def send(case: Any) -> None:
        tally.cases += 1
        case.call_and_validate(base_url=base_url, headers=headers)

    try:
        send()
    except Unsatisfiable:
        # An operation without parameters or body has no invalid request to generate.
        assert mode == GenerationMode.NEGATIVE, f"{operation.label}: no valid case could be generated"
    except (Exception, BaseExceptionGroup) as e:  # schemathesis' FailureGroup: record it and go on
        where = f"{operation.label} [{mode.value}, token={'yes' if headers else 'no'}, run_id={run_id}]"
        tally.failures.append(f"{where}: {_failure_text(e)}")


def _run_all(base_url: str, runner: Callable[..., None], stored_runs: tuple[str, ...] = ()) -> FuzzTally:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    tally = FuzzTally()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15, [operation.label for operation in operations]
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {}):
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            for operation in operations:
                runner(operation, base_url, headers, mode, tally)
        # Random ids name no run: every operation on a run also gets each stored edge case (and a real run).
        for operation in operations:
            if "{run_id}" in operation.path:
                for run_id in (*edges.EDGE_RUNS, *stored_runs):
                    runner(operation, base_url, headers, GenerationMode.POSITIVE, tally, run_id=run_id)
    return tally


def test_fuzzing_every_operation_finds_no_server_error_and_no_schema_mismatch(
    fuzzed_collector: FuzzedCollector,
) -> None:
    tally = _run_all(fuzzed_collector.url, _fuzz_operation, fuzzed_collector.real_runs)
    assert tally.cases >= MIN_CASES, f"only {tally.cases} cases were generated"
    assert not tally.failures, f"{len(tally.failures)} failing operation runs:\n\n" + "\n\n".join(tally.failures)


@pytest.mark.parametrize("with_token", [True, False], ids=["token", "no-token"])
def test_the_stateful_phase_finds_no_server_error_and_no_schema_mismatch(
    fuzzed_collector: FuzzedCollector, with_token: bool
) -> None:
    base_url = fuzzed_collector.url
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    headers = {"Authorization": f"Bearer {TOKEN}"} if with_token else {}
    steps = []

    class Workflow(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Any) -> dict[str, Any]:
            steps.append(case.operation.label)
            return {"base_url": base_url, "headers": headers}

    Workflow.run(
        settings=settings(
            max_examples=STATEFUL_SCENARIOS,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            derandomize=True,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
    )
    assert len(steps) >= STATEFUL_SCENARIOS, steps
    assert len(set(steps)) > 3, f"the links led to too few operations: {sorted(set(steps))}"
