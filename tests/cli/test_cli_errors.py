"""Bad input at the command line: each case gives a clear message, a non-zero exit, and no traceback."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import yaml

from tests.support.cli import CliRun, run_cli

MODEL = Path("assets/models/digits-cnn.yaml")


def _evaluate(cwd: Path, *extra: str, env: dict[str, str] | None = None) -> CliRun:
    return run_cli(
        "--cache-dir",
        str(cwd / "cache"),
        "evaluate",
        "--model",
        "digits-cnn",
        "--framework",
        "onnxruntime",
        "--mode",
        "accuracy",
        *extra,
        cwd=cwd,
        env=env,
    )


def _edit_model(root: Path, change) -> None:  # type: ignore[no-untyped-def]
    path = root / MODEL
    document = yaml.safe_load(path.read_text())
    change(document)
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def _assert_clean_failure(run: CliRun, *fragments: str) -> None:
    assert run.returncode != 0
    assert "Traceback" not in run.stderr + run.stdout
    assert run.stderr.startswith("error:"), run.stderr
    for fragment in fragments:
        assert fragment in run.stderr, run.stderr


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_malformed_yaml(scratch_assets: Path) -> None:
    (scratch_assets / "models" / "digits-cnn.yaml").write_text("kind: Model\nspec: [unclosed\n")
    _assert_clean_failure(_evaluate(scratch_assets.parent), "digits-cnn.yaml", "malformed YAML", "line")


def test_unknown_field(scratch_assets: Path) -> None:
    _edit_model(scratch_assets.parent, lambda d: d["spec"].update({"framwork": {"name": "x"}}))
    _assert_clean_failure(_evaluate(scratch_assets.parent), "digits-cnn.yaml", "spec.framwork: unknown field")


def test_wrong_type(scratch_assets: Path) -> None:
    _edit_model(scratch_assets.parent, lambda d: d["spec"]["outputs"][0].update({"shape": "ten"}))
    _assert_clean_failure(_evaluate(scratch_assets.parent), "spec.outputs[0].shape", "'ten'")


def test_unknown_framework(scratch_assets: Path) -> None:
    run = run_cli("evaluate", "--model", "digits-cnn", "--framework", "tensorflowz", cwd=scratch_assets.parent)
    _assert_clean_failure(run, "unknown framework 'tensorflowz'", "frameworks list")


def test_unknown_model(scratch_assets: Path) -> None:
    run = run_cli("evaluate", "--model", "digits", "--framework", "onnxruntime", cwd=scratch_assets.parent)
    _assert_clean_failure(run, "unknown model 'digits'", "Did you mean 'digits-cnn'?")


def test_framework_version_not_satisfying_the_constraint(scratch_assets: Path) -> None:
    _edit_model(scratch_assets.parent, lambda d: d["spec"]["framework"].update({"version": "<1.0"}))
    _assert_clean_failure(_evaluate(scratch_assets.parent), "does not satisfy", "'<1.0'")


def test_checksum_mismatch(scratch_assets: Path) -> None:
    _edit_model(scratch_assets.parent, lambda d: d["spec"]["artifacts"][0].update({"sha256": "0" * 64}))
    _assert_clean_failure(_evaluate(scratch_assets.parent), "digits_cnn.onnx", "0" * 64)


def test_missing_artifact(scratch_assets: Path) -> None:
    (scratch_assets / "artifacts" / "digits" / "digits_cnn.onnx").unlink()
    _assert_clean_failure(_evaluate(scratch_assets.parent), "digits_cnn.onnx")


def test_unreachable_s3(scratch_assets: Path) -> None:
    _edit_model(scratch_assets.parent, lambda d: d["spec"]["artifacts"][0].update({"uri": "s3://models/digits.onnx"}))
    port = _closed_port()
    run = _evaluate(scratch_assets.parent, env={"MLMODELSCOPE_S3_ENDPOINT": f"127.0.0.1:{port}"})
    _assert_clean_failure(run, f"127.0.0.1:{port}")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--scenario", "sideways"], "--scenario 'sideways' is not one of"),
        (["--min-duration", "soon"], "--min-duration 'soon' is not a duration"),
        (["--scenario", "server", "--mode", "performance"], "the server scenario needs --target-qps"),
        (["--batch-size", "0"], "--batch-size '0': '0' is not a batch size"),
        (["--batch-size", "1,,4"], "--batch-size '1,,4': '' is not a batch size"),
        (["--batch-size", "1,x"], "'x' is not a batch size"),
        (["--framework", "onnxruntime", "--reference", "pytorch"], "--reference 'pytorch' is not one of"),
    ],
)
def test_bad_settings(scratch_assets: Path, args: list[str], fragment: str) -> None:
    # (a later --framework overrides _evaluate's: typer keeps the last value)
    _assert_clean_failure(_evaluate(scratch_assets.parent, *args), fragment)


def test_missing_framework_runtime_says_how_to_create_it(scratch_assets: Path) -> None:
    path = scratch_assets / "frameworks" / "onnxruntime.yaml"
    document = yaml.safe_load(path.read_text())
    document["spec"]["runtime"] = {"python": "../../.venv-nowhere/bin/python"}
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    run = _evaluate(scratch_assets.parent)
    _assert_clean_failure(
        run, "framework 'onnxruntime' runs in the interpreter", ".venv-nowhere/bin/python", "make setup"
    )
