"""The pages' edge cases without a browser (ASGI client): cluster evaluation ids, unknown ids, bad filters, forms
without a token or configuration; each answers a precise 4xx page, never a 500."""

from __future__ import annotations

import pytest

from tests.support import collector as fixtures

pytestmark = pytest.mark.anyio
TOKEN = "page-token"


async def test_a_cluster_evaluation_id_with_a_namespace_has_its_page_and_sweeps(sqlite_url: str) -> None:
    async with fixtures.running_app(fixtures.settings_for(sqlite_url)) as app:
        for envelope in fixtures.full_run("r-1", evaluation_id="default/digits-minimal"):
            app.runtime.ingestor.ingest(envelope)
        page = await app.client.get("/ui/evaluations/default/digits-minimal")
        assert page.status_code == 200
        assert 'data-run="r-1"' in page.text and "finished" in page.text
        listing = await app.client.get("/ui/runs")
        assert 'href="/ui/evaluations/default/digits-minimal"' in listing.text
        sweeps = await app.client.get("/api/v1/sweeps", params={"evaluation_id": "default/digits-minimal"})
        assert sweeps.status_code == 200 and sweeps.json()["sweeps"] == []


async def test_unknown_ids_and_bad_input_are_precise_4xx_pages(sqlite_url: str) -> None:
    async with fixtures.running_app(fixtures.settings_for(sqlite_url)) as app:
        client = app.client
        missing = await client.get("/ui/runs/nope")
        assert missing.status_code == 404 and "no run &#39;nope&#39;" in missing.text
        assert (await client.get("/ui/evaluations/nope")).status_code == 404
        bad = await client.get("/ui/runs", params={"status": "exploded"})
        assert bad.status_code == 422 and "invalid filter" in bad.text
        one = await client.get("/ui/compare", params={"run": "a"})
        assert one.status_code == 200 and "Pick two or more runs" in one.text
        unknown = await client.get("/ui/compare", params=[("run", "a"), ("run", "b")])
        assert unknown.status_code == 404 and "no run &#39;a&#39;" in unknown.text
        assert (await client.get("/")).headers["location"] == "/ui/runs"


async def test_forms_need_the_token_and_a_configured_launcher(sqlite_url: str) -> None:
    async with fixtures.running_app(fixtures.settings_for(sqlite_url, api_token=TOKEN)) as app:
        for envelope in fixtures.full_run("r-2"):
            app.runtime.ingestor.ingest(envelope)
        client = app.client
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        launch_page = await client.get("/ui/launch")
        assert launch_page.status_code == 200 and "cannot launch evaluations" in launch_page.text
        no_token = await client.post("/ui/launch", content="model=digits-cnn&frameworks=onnxruntime", headers=form)
        assert no_token.status_code == 401
        not_configured = await client.post(
            "/ui/launch", content=f"model=digits-cnn&frameworks=onnxruntime&token={TOKEN}", headers=form
        )
        assert not_configured.status_code == 409 and "launch_cache_dir" in not_configured.text
        bad_batch = await client.post(
            "/ui/launch", content=f"model=digits-cnn&frameworks=onnxruntime&batch_sizes=x&token={TOKEN}", headers=form
        )
        assert bad_batch.status_code == 422 and "give integers" in bad_batch.text
        wrong = await client.post("/ui/runs/r-2/baseline", content="token=wrong", headers=form)
        assert wrong.status_code == 403
        marked = await client.post("/ui/runs/r-2/baseline", content=f"token={TOKEN}", headers=form)
        assert marked.status_code == 303 and marked.headers["location"] == "/ui/runs/r-2"
        assert [b["run_id"] for b in (await client.get("/api/v1/baselines")).json()["items"]] == ["r-2"]
        baselines_page = await client.get("/ui/baselines")
        assert 'data-baseline="r-2"' in baselines_page.text
