"""Builders of the pretrained zoo models' ONNX and TorchScript artifacts (PyTorch's runtime).

Why this module exists: ``torch_models`` defines MobileNetV2 exactly as torchvision does (same module tree, so
torchvision's state dict loads key for key), and this module puts the trained weights of ``pretrained`` into it
and exports it. torchvision itself is not used (it cannot be imported next to this torch).

Determinism: a TorchScript file records the process's type-mangling counters (``___torch_mangle_<N>``, which
depend on what the process traced before) and, in its ``*.debug_pkl`` members, the absolute paths of the Python
sources it traced (the checkout's and the virtualenv's). So each build runs in a fresh interpreter
(``python -m mlmodelscope.agent.zoo.pretrained_torch <format> <model> <destination>``) and the TorchScript archive
is rewritten without its debug members (``torch.jit.load`` does not need them; error messages from inside the
model then lack Python source lines). The ONNX file (legacy exporter, opset 17, dynamic batch) holds neither.

I/O contract: ``input`` float32 (N, 3, 224, 224), normalised RGB -> ``logits`` float32 (N, 1000), no softmax.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from mlmodelscope.agent.zoo import pretrained
from mlmodelscope.core.errors import ModelLoadError

if TYPE_CHECKING:
    import torch

ONNX_OPSET = 17
INPUT_NAME = "input"
OUTPUT_NAME = "logits"
FILE_SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
BUILD_TIMEOUT_S = 600.0


def build(model: str, destination: Path, *, seed: int, artifact_format: str, check: bool = True) -> Path:
    """Build pretrained ``model`` as ``artifact_format`` into ``destination`` in a fresh interpreter, then check
    it against the pinned digests (``check=False``: only when making the pins)."""
    spec = pretrained.pretrained_model(model, seed=seed)
    if artifact_format not in FILE_SUFFIX:
        raise ModelLoadError(
            f"zoo:{model} is built as {', '.join(FILE_SUFFIX)} in PyTorch's runtime, not as {artifact_format}.",
            hint="Use format onnx or torchscript for this zoo model (or keras / mxnet in their runtimes).",
        )
    if check:
        pretrained.check_format(spec, artifact_format)
    command = [sys.executable, "-m", __name__, artifact_format, model, str(destination)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(command, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S, env=env, check=False)
    if done.returncode != 0:
        raise ModelLoadError(
            f"building zoo:{model} as {artifact_format} failed (exit {done.returncode}): {done.stderr[-2000:]}",
            hint="The PyTorch export failed; the output above has the cause.",
        )
    if check:
        pretrained.check_build(spec, artifact_format, destination)
    return destination / f"{model}{FILE_SUFFIX[artifact_format]}"


def _trained_module(spec: pretrained.PretrainedModel) -> torch.nn.Module:
    import torch

    from mlmodelscope.agent.zoo import torch_models

    module = torch_models.zoo_model(spec.architecture, seed=0)
    tensors = {name: torch.from_numpy(array) for name, array in pretrained.state_dict(spec).items()}
    module.load_state_dict(tensors, strict=True)
    return module.eval()


def _export(artifact_format: str, model: str, destination: Path) -> None:
    """The body of the fresh interpreter: export pretrained ``model`` into ``destination``."""
    import torch

    spec = pretrained.pretrained_model(model, seed=0)
    module = _trained_module(spec)
    example = torch.zeros((2, 3, 224, 224), dtype=torch.float32)
    path = destination / f"{model}{FILE_SUFFIX[artifact_format]}"
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporters' deprecation and tracer notices
        if artifact_format == "onnx":
            torch.onnx.export(
                module,
                (example,),
                str(path),
                dynamo=False,
                # No float arithmetic in the exporter: in EVAL mode it folds each BatchNorm into its Conv with
                # torch's CPU kernels, whose last bits depend on the CPU's vector instructions (AVX2 vs AVX-512
                # gave other bytes), and the pinned sha256 would then hold on some machines only. The module is in
                # eval mode, so PRESERVE writes inference BatchNormalization nodes; ONNX Runtime fuses them itself.
                training=torch.onnx.TrainingMode.PRESERVE,
                do_constant_folding=False,
                opset_version=ONNX_OPSET,
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            )
        else:
            traced = torch.jit.trace(module, (example,), check_trace=False)  # type: ignore[no-untyped-call]
            raw = destination / ".traced.pt"
            traced.save(str(raw))
            _without_debug_records(raw, path)
            raw.unlink()


def _without_debug_records(source: Path, target: Path) -> None:
    """Copy a TorchScript archive record by record (torch's own writer: alignment kept), minus ``*.debug_pkl``."""
    import torch

    reader = torch._C.PyTorchFileReader(str(source))
    writer = torch._C.PyTorchFileWriter(str(target))
    for name in reader.get_all_records():
        if name.endswith(".debug_pkl") or name == ".data/serialization_id":
            continue  # the writer computes its own serialization id
        data = reader.get_record(name)
        writer.write_record(name, data, len(data))
    writer.write_end_of_file()


if __name__ == "__main__":
    _export(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
