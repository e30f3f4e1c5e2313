"""``mlmodelscope runs import``: store what agents could not publish (``<run dir>/unpublished/*.jsonl``).

An agent that gave up on NATS keeps every unacknowledged envelope in its run folder (``agent.bus.spool``). This
imports them into the collector's database through the collector's own ingestion, in the same transactions and
with the same de-duplication by message id, so a message that had reached the collector before NATS died, or a
second import of the same file, is counted as already stored and changes nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mlmodelscope.agent.bus.spool import read_spool, spool_files
from mlmodelscope.collector.runtime import open_runtime
from mlmodelscope.collector.settings import CollectorSettings
from mlmodelscope.collector.storage.ingest import IngestOutcome, Rejection
from mlmodelscope.core.errors import MLModelScopeError
from mlmodelscope.core.messages import SUBJECT_PREFIX


@dataclass
class ImportReport:
    files: list[Path] = field(default_factory=list)
    stored: int = 0
    already_stored: int = 0
    rejected: list[str] = field(default_factory=list)  # "<file>:<line>: <reason>"
    run_ids: set[str] = field(default_factory=set)


def _subject(data: bytes) -> str:
    """The subject the envelope would have had on the bus (recorded with a rejection); empty if unreadable."""
    try:
        document = json.loads(data)
        return f"{SUBJECT_PREFIX}.{document['run_id']}.{document['payload']['kind']}"
    except (ValueError, KeyError, TypeError):
        return ""


def import_unpublished(path: Path, database_url: str) -> ImportReport:
    """Ingest every spool file under ``path`` (a spool file, a run folder or a data folder) into the database."""
    if not path.exists():
        raise MLModelScopeError(f"{path}: no such file or folder.", hint="Name a run folder or the data folder.")
    report = ImportReport(files=spool_files(path))
    if not report.files:
        return report
    runtime = open_runtime(CollectorSettings(database_url=database_url))
    try:
        for spool in report.files:
            try:
                lines = list(read_spool(spool))
            except OSError as e:
                raise MLModelScopeError(f"{spool}: cannot read: {e.strerror}.") from e
            for number, data in lines:
                subject = _subject(data)
                outcome = runtime.ingestor.ingest_bytes(data, subject=subject)
                if isinstance(outcome, Rejection):
                    report.rejected.append(f"{spool}:{number}: {outcome.reason}: {outcome.detail}")
                    continue
                report.run_ids.add(subject.split(".")[2] if subject else "?")
                if outcome is IngestOutcome.INSERTED:
                    report.stored += 1
                else:
                    report.already_stored += 1
    finally:
        runtime.database.dispose()
    return report
