"""`mlmodelscope evaluate` checks what it can before it starts anything, and names the user's flags.

Each bad input must end the command with the error (naming the flag, the manifest or the URI, with the fix) before
the embedded NATS, the collector or an agent starts: the data folder stays empty and no child process is left.
The command runs in this process (``main``), so its children are this process's children.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from mlmodelscope.cli.main import main
from mlmodelscope.cli.option_errors import OPTION_OF_FIELD


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in [n for n in os.environ if n.startswith("MLMODELSCOPE_")]:
        monkeypatch.delenv(name)
    folder = tmp_path / "data"
    monkeypatch.setenv("MLMODELSCOPE_DATA_DIR", str(folder))
    monkeypatch.setenv("COLUMNS", "200")
    return folder


def _edit(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = yaml.safe_load(path.read_text())
    change(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def _evaluate_fails_before_starting(
    assets: Path, data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, *args: str
) -> str:
    """Run `evaluate` on ``assets``; assert it failed with nothing started; return what it printed on stderr."""
    monkeypatch.chdir(assets.parent)
    children_before = {p.pid for p in psutil.Process().children(recursive=True)}
    code = main(["--cache-dir", str(assets.parent / "cache"), "evaluate", "--mode", "accuracy", *args])
    stderr = capsys.readouterr().err
    assert code == 1, stderr
    assert stderr.startswith("error:"), stderr
    assert "Traceback" not in stderr
    started = {p.pid for p in psutil.Process().children(recursive=True)} - children_before
    assert not started, f"processes started: {started}"
    assert not data_dir.exists() or not any(data_dir.iterdir()), sorted(data_dir.rglob("*"))
    return " ".join(stderr.split())  # one line, whatever the terminal width wrapped


def _model(assets: Path) -> Path:
    return assets / "models" / "digits-cnn.yaml"


def _first_artifact(change: Callable[[dict[str, Any]], None]) -> Callable[[dict[str, Any]], None]:
    return lambda d: change(d["spec"]["artifacts"][0])


CASES: list[tuple[str, str, Callable[[dict[str, Any]], None], list[str], list[str]]] = [
    # (id, manifest to edit, edit, extra args, fragments of the message)
    (
        "s3-uri-without-key",
        "models/digits-cnn.yaml",
        lambda d: d["spec"]["artifacts"][0].update({"uri": "s3://models"}),
        ["-f", "onnxruntime"],
        ["model 'digits-cnn'", "digits-cnn.yaml", "s3://models: an S3 URI must name a bucket and an object key"],
    ),
    (
        "unsupported-scheme",
        "models/digits-cnn.yaml",
        lambda d: d["spec"]["artifacts"][0].update({"uri": "ftp://host/digits.onnx"}),
        ["-f", "onnxruntime"],
        ["ftp://host/digits.onnx", "'ftp://' is not supported"],
    ),
    (
        "labels-uri-without-key",
        "models/digits-cnn.yaml",
        lambda d: d["spec"]["outputs"][0]["labels"].update({"uri": "s3://labels/"}),
        ["-f", "onnxruntime"],
        ["model 'digits-cnn' labels", "s3://labels/: an S3 URI must name a bucket and an object key"],
    ),
    (
        "dataset-uri-without-key",
        "datasets/digits.yaml",
        lambda d: d["spec"]["source"].update({"uri": "s3://data"}),
        ["-f", "onnxruntime"],
        ["dataset 'digits'", "digits.yaml", "s3://data: an S3 URI must name a bucket"],
    ),
    (
        "unknown-dataset",
        "models/digits-cnn.yaml",
        lambda d: None,
        ["-f", "onnxruntime", "--dataset", "digitz"],
        ["unknown dataset 'digitz'", "Did you mean 'digits'?", "datasets list"],
    ),
    (
        "unknown-default-dataset",
        "models/digits-cnn.yaml",
        lambda d: d["spec"].update({"dataset": "mnist"}),
        ["-f", "onnxruntime"],
        ["unknown dataset 'mnist'"],
    ),
    (
        "format-not-run-by-the-framework",
        "models/digits-cnn.yaml",
        lambda d: d["spec"].update({"artifacts": d["spec"]["artifacts"][:1]}),
        ["-f", "pytorch"],
        ["model 'digits-cnn' has artifacts in onnx", "framework 'pytorch' runs torchscript"],
    ),
    (
        "version-constraint",
        "models/digits-cnn.yaml",
        lambda d: d["spec"]["framework"].update({"version": "<1.0"}),
        ["-f", "onnxruntime"],
        ["does not satisfy model 'digits-cnn''s constraint '<1.0'"],
    ),
    (
        "device-the-framework-does-not-declare",
        "frameworks/null.yaml",
        lambda d: None,
        ["-f", "null", "--device", "gpu"],
        ["framework 'null' declares accelerators ['cpu'], not 'gpu'", "--device"],
    ),
    (
        "settings",
        "models/digits-cnn.yaml",
        lambda d: None,
        ["-f", "onnxruntime", "--mode", "performance", "--scenario", "server", "--target-qps", "-5"],
        ["--target-qps must be > 0 (got -5)"],
    ),
]


@pytest.mark.parametrize(("manifest", "edit", "args", "fragments"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_fails_before_any_service_starts(
    scratch_assets: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    manifest: str,
    edit: Callable[[dict[str, Any]], None],
    args: list[str],
    fragments: list[str],
) -> None:
    _edit(scratch_assets / manifest, edit)
    message = _evaluate_fails_before_starting(scratch_assets, data_dir, capsys, monkeypatch, "-m", "digits-cnn", *args)
    for fragment in fragments:
        assert fragment in message, message


# Every settings option of `evaluate`, with a value its field refuses, and the message that names the flag.
BAD_OPTIONS: list[tuple[list[str], str, str]] = [
    (["--target-qps", "-1", "--scenario", "server"], "--target-qps must be > 0 (got -1)", "arrival rate"),
    (["--target-qps", "0", "--scenario", "server"], "--target-qps must be > 0 (got 0)", "arrival rate"),
    (["--scenario", "server", "--mode", "performance"], "the server scenario needs --target-qps", "arrival rate"),
    (["--latency-bound-ms", "0"], "--latency-bound-ms must be > 0 (got 0)", "milliseconds"),
    (["--min-queries", "0"], "--min-queries must be >= 1 (got 0)", "query count"),
    (["--max-queries", "0"], "--max-queries must be >= 1 (got 0)", "--min-queries"),
    (["--max-queries", "5", "--min-queries", "10"], "--max-queries (5) is lower than --min-queries (10)", "omit it"),
    (["--max-duration", "0s"], "--max-duration must be > 0 (got 0)", "--min-duration"),
    (["--max-duration", "1s", "--min-duration", "5s"], "--max-duration (1.0) is shorter than --min-duration", "omit"),
    (["--warmup", "-1"], "--warmup must be >= 0 (got -1)", "untimed"),
    (["--samples-per-query", "0"], "--samples-per-query must be >= 1 (got 0)", "samples"),
    (["--threads", "0"], "--threads must be >= 1 (got 0)", "framework's default"),
    (["--performance-sample-count", "0"], "--performance-sample-count must be >= 1 (got 0)", "dataset items"),
]


@pytest.mark.parametrize(("args", "message", "fix"), BAD_OPTIONS, ids=[" ".join(c[0]) for c in BAD_OPTIONS])
def test_invalid_settings_name_the_flag_and_the_fix(
    scratch_assets: Path,
    data_dir: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    args: list[str],
    message: str,
    fix: str,
) -> None:
    printed = _evaluate_fails_before_starting(
        scratch_assets, data_dir, capsys, monkeypatch, "-m", "digits-cnn", "-f", "onnxruntime", *args
    )
    error, _, how_to_fix = printed.partition("how to fix:")
    assert message in error, printed
    assert fix in how_to_fix, printed
    internal = [name for name in OPTION_OF_FIELD if "_" in name and re.search(rf"\b{name}\b", printed)]
    assert not internal, f"internal field names in the message: {internal}: {printed}"
