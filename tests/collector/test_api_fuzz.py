"""Schemathesis against a real collector (uvicorn on 127.0.0.1) that serves real runs and the edge cases.
Acceptance: no response >= 500 and no response that contradicts the OpenAPI document (status, content type,
schema, Allow header, auth), with and without the token.

* ``test_every_phase_...``: schemathesis' engine, as ``schemathesis run`` drives it: the coverage phase (boundary
  and invalid values of every parameter, undocumented methods), the fuzzing phase (positive and negative data) and
  the stateful phase (sequences that follow the links it infers), at least 500 cases per run;
* ``test_every_operation_on_every_stored_run``: random ids name no stored run, so every operation on a run is also
  sent for each edge-case run and a real run (its other parameters generated).

The database is a copy of the shared web environment's (real evaluations: a framework-traced run and a batch sweep) plus
``tests/support/edge_cases.py`` (NaN result, all-zero latencies, cycles, durations near 2**63, a succeeded run without a
result). Generation is derandomized (fixed seed), so a failure reproduces with the same cases.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mlmodelscope.core.evaluation.results import RunResult
from tests.support import edge_cases as edges
from tests.support.web import shared_environment

schemathesis = pytest.importorskip("schemathesis", reason="the API fuzz test needs schemathesis (make setup)")
hypothesis = pytest.importorskip("hypothesis", reason="the API fuzz test needs hypothesis (make setup)")

from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.config import SchemathesisConfig  # noqa: E402
from schemathesis.engine import Status, events  # noqa: E402

pytestmark = pytest.mark.slow
TOKEN = "fuzz-token"
SEED = 1
ENGINE_EXAMPLES_PER_OPERATION = 12
EXAMPLES_PER_STORED_RUN = 2
MIN_CASES = 500


@dataclass
class FuzzTally:
    """Cases sent and the failures schemathesis' checks reported (operation: message)."""

    cases: int = 0
    failures: list[str] = field(default_factory=list)


def _copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite database another process has open (the online backup API)."""
    with sqlite3.connect(source) as live, sqlite3.connect(target) as copy:
        live.backup(copy)


def _real_result(database: Path) -> RunResult:
    with sqlite3.connect(database) as connection:
        row = connection.execute("SELECT result FROM runs WHERE status = 'succeeded' AND result IS NOT NULL").fetchone()
    assert row is not None, "the shared environment holds no succeeded run"
    return RunResult.model_validate_json(row[0])


@dataclass(frozen=True)
class FuzzedCollector:
    url: str
    real_runs: tuple[str, ...]


@pytest.fixture(scope="module")
def fuzzed_collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzedCollector]:
    env = shared_environment()
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


def _fuzz_operation(operation: Any, base_url: str, headers: dict[str, str], run_id: str, tally: FuzzTally) -> None:
    """Send generated cases of one operation with ``run_id`` in its path (the other parameters generated)."""

    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters={"run_id": run_id}))
    @settings(
        max_examples=EXAMPLES_PER_STORED_RUN,
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
    except (Exception, BaseExceptionGroup) as e:  # schemathesis' FailureGroup: record it and go on
        where = f"{operation.label} [run_id={run_id}, token={'yes' if headers else 'no'}]"
        tally.failures.append(f"{where}: {_failure_text(e)}")


def test_every_operation_on_every_stored_run(fuzzed_collector: FuzzedCollector) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed_collector.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    on_a_run = [operation for operation in operations if "{run_id}" in operation.path]
    assert len(on_a_run) >= 8, [operation.label for operation in operations]
    tally = FuzzTally()
    for headers in ({"Authorization": f"Bearer {TOKEN}"}, {}):
        for operation in on_a_run:
            for run_id in (*edges.EDGE_RUNS, *fuzzed_collector.real_runs):
                _fuzz_operation(operation, fuzzed_collector.url, headers, run_id, tally)
    assert tally.cases >= len(on_a_run) * len(edges.EDGE_RUNS) * 2
    assert not tally.failures, f"{len(tally.failures)} failing operation runs:\n\n" + "\n\n".join(tally.failures)


@dataclass
class EngineTally:
    cases_by_phase: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def _run_engine(base_url: str, headers: dict[str, str]) -> EngineTally:
    """Every phase of schemathesis' engine, as ``schemathesis run --checks all`` runs them."""
    config = SchemathesisConfig.from_dict(
        {
            "seed": SEED,
            "headers": headers,
            "generation": {"max-examples": ENGINE_EXAMPLES_PER_OPERATION, "deterministic": True},
            "phases": {name: {"enabled": True} for name in ("examples", "coverage", "fuzzing", "stateful")},
        }
    )
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", config=config)
    tally = EngineTally()
    for event in schemathesis.engine.from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            phase = event.phase.value
            tally.cases_by_phase[phase] = tally.cases_by_phase.get(phase, 0) + len(event.recorder.cases)
            for checks in event.recorder.checks.values():
                for check in checks:
                    if check.status == Status.FAILURE:
                        detail = str(check.failure_info.failure)[:1500] if check.failure_info else ""
                        tally.failures.append(f"{phase} {event.label} {check.name}: {detail}")
        elif isinstance(event, events.NonFatalError):
            tally.failures.append(f"error in {event.label}: {event.value!r}"[:1500])
        elif isinstance(event, events.FatalError):
            raise AssertionError(f"schemathesis stopped: {event.exception!r}")
    return tally


@pytest.mark.parametrize("with_token", [True, False], ids=["token", "no-token"])
def test_every_phase_of_schemathesis_finds_no_server_error_and_no_schema_mismatch(
    fuzzed_collector: FuzzedCollector, with_token: bool
) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"} if with_token else {}
    tally = _run_engine(fuzzed_collector.url, headers)
    assert sum(tally.cases_by_phase.values()) >= MIN_CASES, tally.cases_by_phase
    assert tally.cases_by_phase.get("stateful", 0) > 0, f"no stateful scenario ran: {tally.cases_by_phase}"
    failures = sorted(set(tally.failures))
    assert not failures, f"{len(failures)} failures:\n\n" + "\n\n".join(failures)
