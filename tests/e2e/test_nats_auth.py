"""NATS requires a token, and only the holders of the token get in: real nats-servers (local mode's embedded one, and
one running the Helm chart's rendered ``nats.conf``), real nats-py clients, the real collector and agent.

* a client without the token (or with a wrong one) is refused, by both servers;
* the agent's publisher without the token fails at once, saying the credentials were refused;
* the whole pipeline (agent -> NATS -> collector) with the token delivers a run;
* local mode generates a token, gives it to the collector and its agents through the environment, and shows it
  on no command line and in no file.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from mlmodelscope.agent.bus.connection import generate_token
from mlmodelscope.agent.bus.publisher import PublishError, PublisherSettings, RunPublisher
from mlmodelscope.cli.nats_server import CONFIG_FILE, EmbeddedNatsServer, free_port, nats_server_binary, terminate
from mlmodelscope.core.jetstream import NATS_TOKEN_ENV, ensure_stream
from mlmodelscope.core.messages import Progress
from tests.support.chart import CHART, by_kind, render
from tests.support.cli import clean_environment
from tests.support.paths import ASSETS
from tests.support.pipeline_processes import AgentProcess, CollectorProcess, ProcessReaper, stream_last_seq, write_spec
from tests.support.waiting import wait_for

pytestmark = pytest.mark.slow


def _connect(url: str, token: str | None) -> str:
    """'ok' when a plain nats-py client gets in (and can use JetStream), else why it was refused."""

    async def attempt() -> str:
        options: dict[str, Any] = {"token": token} if token is not None else {}
        try:
            client = await nats.connect(
                url, connect_timeout=2, allow_reconnect=False, max_reconnect_attempts=0, **options
            )
        except Exception as e:
            return f"refused: {e}"
        try:
            await ensure_stream(client.jetstream())
            return "ok"
        finally:
            await client.close()

    async def bounded() -> str:
        return await asyncio.wait_for(attempt(), timeout=15)

    return asyncio.run(bounded())


@pytest.fixture
def token() -> str:
    return generate_token()


@pytest.fixture
def nats_server(tmp_path: Path, token: str) -> Iterator[EmbeddedNatsServer]:
    server = EmbeddedNatsServer(tmp_path / "nats", token=token)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def test_the_embedded_server_refuses_clients_without_its_token(nats_server: EmbeddedNatsServer, token: str) -> None:
    assert _connect(nats_server.url, None) == "refused: nats: 'Authorization Violation'"
    assert _connect(nats_server.url, token[:-1]).startswith("refused:")
    assert _connect(nats_server.url, token) == "ok"
    # The token is on no command line (``ps`` shows those to every user) and in no file.
    assert nats_server.pid is not None
    command_line = Path(f"/proc/{nats_server.pid}/cmdline").read_bytes()
    assert token.encode() not in command_line
    assert token not in (nats_server.data_dir / CONFIG_FILE).read_text()
    assert f"${NATS_TOKEN_ENV}" in (nats_server.data_dir / CONFIG_FILE).read_text()


def test_a_publisher_without_the_token_is_refused_at_once(nats_server: EmbeddedNatsServer, token: str) -> None:
    settings = PublisherSettings(nats_server.url, give_up_after_s=600, connect_timeout_s=1)
    refused = RunPublisher("no-token", settings)
    refused.start()
    try:
        with pytest.raises(PublishError) as raised:  # at the next publish, or at close if that came first
            refused.publish(Progress(phase="x", completed_queries=0, elapsed_s=0.0))
            refused.close(timeout_s=60)  # well before give_up_after_s: refused credentials are not retried
    finally:
        with contextlib.suppress(PublishError):
            refused.close(timeout_s=10)  # stops its thread when publish raised first
    assert "refused the agent's credentials" in raised.value.message and NATS_TOKEN_ENV in str(raised.value)
    assert stream_last_seq(nats_server.url) == 0  # unauthenticated: cannot even read

    allowed = RunPublisher("with-token", PublisherSettings(nats_server.url, token=token))
    allowed.start()
    allowed.publish(Progress(phase="x", completed_queries=1, elapsed_s=0.0))
    allowed.close()
    assert _connect(nats_server.url, token) == "ok"
    assert token not in repr(allowed.settings)


def test_the_pipeline_with_the_token_delivers_a_run(
    tmp_path: Path, nats_server: EmbeddedNatsServer, token: str, reaper: ProcessReaper
) -> None:
    collector = CollectorProcess(
        tmp_path / "collector", nats_server.url, reaper, extra_env={"MLMODELSCOPE_COLLECTOR_NATS_TOKEN": token}
    )
    collector.start()  # ready means: its durable consumer is bound, so it got in with the token
    spec = write_spec(
        tmp_path / "spec.json",
        run_id="authed",
        nats_url=nats_server.url,
        assets=ASSETS,
        workdir=tmp_path,
        settings={"scenario": "single-stream", "mode": "performance", "min_duration_s": 1.0},
    )
    agent = AgentProcess.start(spec, tmp_path, reaper, extra_env={NATS_TOKEN_ENV: token})
    assert agent.wait(timeout_s=120) == 0, agent.stderr
    assert token.encode() not in spec.read_bytes()

    def stored() -> dict[str, Any] | None:
        detail: dict[str, Any] | None = collector.get_json("/api/v1/runs/authed")
        return detail if detail is not None and detail.get("complete") else None

    detail = wait_for(stored, timeout_s=60, what="the run stored by the collector")
    assert detail["status"] == "succeeded"


def test_local_mode_generates_a_token_and_hands_it_over_by_environment(tmp_path: Path) -> None:
    from mlmodelscope.cli.local import BusProgress, DataDir, local_collector

    assert NATS_TOKEN_ENV not in os.environ
    with local_collector(DataDir(tmp_path / "data"), with_nats=True) as (collector, server):
        assert server is not None and server.token is not None
        token = server.token
        # The collector is ready: its consumer got in with the token (MLMODELSCOPE_COLLECTOR_NATS_TOKEN).
        assert _connect(server.url, None).startswith("refused:")
        # Agents started now inherit the token; none is on a command line.
        assert os.environ[NATS_TOKEN_ENV] == token
        for pid in (server.pid, collector.pid):
            assert token.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        bus = BusProgress()
        thread = bus.follow(server.url)
        publisher = RunPublisher("local", PublisherSettings(server.url, token=token))
        publisher.start()
        for count in range(50):
            publisher.publish(Progress(phase="performance", completed_queries=count, elapsed_s=0.1))
        publisher.close()
        wait_for(lambda: bus.completed.get("local") is not None, timeout_s=20, what="progress read from the bus")
        bus.stop()
        thread.join(timeout=5)
    assert NATS_TOKEN_ENV not in os.environ


def test_the_charts_nats_config_refuses_clients_without_the_token(tmp_path: Path) -> None:
    """The chart's rendered nats.conf, run by a real nats-server with the chart's Secret in its environment."""
    documents = render(tmp_path / "helm-home")
    config = next(d for d in by_kind(documents, "ConfigMap") if d["metadata"]["name"].endswith("nats"))
    secret = next(s for s in by_kind(documents, "Secret") if s["metadata"]["name"].endswith("nats-auth"))
    token = base64.b64decode(secret["data"]["token"]).decode()
    text = config["data"]["nats.conf"]
    port = free_port()
    text = re.sub(r"(?m)^port: 4222$", f"port: {port}", text)
    text = re.sub(r"(?m)^http_port: 8222$", f"http_port: {free_port()}", text)
    text = text.replace("store_dir: /data/jetstream", f"store_dir: {tmp_path / 'jetstream'}")
    assert f"port: {port}" in text and str(tmp_path) in text, "the chart's nats.conf changed shape"
    (tmp_path / "nats.conf").write_text(text, encoding="utf-8")
    environment = clean_environment(POD_NAME="rel-mlmodelscope-nats-0", **{NATS_TOKEN_ENV: token})
    process = subprocess.Popen(
        [str(nats_server_binary()), "-a", "127.0.0.1", "-c", str(tmp_path / "nats.conf")],
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        url = f"nats://127.0.0.1:{port}"
        wait_for(lambda: _connect(url, token) == "ok", timeout_s=20, what=f"the chart's NATS config in {CHART}")
        assert _connect(url, None) == "refused: nats: 'Authorization Violation'"
        assert _connect(url, "mlms" + "x" * 40).startswith("refused:")
    finally:
        terminate(process, timeout_s=5)
        assert process.stderr is not None
        process.stderr.close()
