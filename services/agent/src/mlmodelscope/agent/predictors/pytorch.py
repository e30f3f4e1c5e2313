"""PyTorch predictor: a TorchScript or ``torch.export`` model on the CPU or a CUDA GPU.

Both formats are zip archives; ``load`` tells them apart by looking inside rather than by trying loaders in turn
(which would hide the real error of the right loader behind the wrong one's): a ``torch.export.save`` archive has an
``archive_format`` member, a ``torch.jit.save`` archive has ``constants.pkl`` / ``data.pkl``. TorchScript is loaded
as saved, without ``torch.jit.freeze`` / ``optimize_for_inference`` (not measured yet; those passes rewrite the
graph, so the model evaluated would no longer be exactly the artifact whose sha256 the manifest pins).

With ``options.profile_dir`` set (FRAMEWORK tracing), ``load`` chooses a predict closure that marks each call with
``torch.profiler.record_function`` for ``profilers.pytorch.PyTorchProfiler``; otherwise the hot path has no marker.
``load`` also keeps freed activation buffers in the process (``glibc_malloc.retain_freed_memory``): with glibc's
defaults every call re-faulted them page by page, ~16-25% of a ResNet-18 call's CPU time.
"""

from __future__ import annotations

import logging
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlmodelscope.agent.predictors.base import FrameworkPackage, FrameworkPredictor, PredictFn
from mlmodelscope.agent.predictors.glibc_malloc import retain_freed_memory
from mlmodelscope.agent.predictors.signature import count_mismatch
from mlmodelscope.agent.profilers.pytorch import PREDICT_EVENT, PyTorchProfiler
from mlmodelscope.core.errors import DeviceUnavailableError, ModelLoadError, PredictorError

log = logging.getLogger(__name__)

TORCHSCRIPT = "torchscript"
TORCH_EXPORT = "torch_export"
_TORCHSCRIPT_PROFILING_RUNS = 3
TORCH = FrameworkPackage("PyTorch", "torch", "pytorch", "(a CUDA build of torch for --device gpu)")


def artifact_format(path: Path) -> str:
    """``torchscript`` or ``torch_export`` from the archive's members; ModelLoadError for anything else."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.namelist()
    except (OSError, zipfile.BadZipFile) as e:
        raise ModelLoadError(
            f"PyTorch could not load {path}: not a TorchScript or torch.export archive ({e}).",
            hint="Check that the artifact was saved with torch.jit.save or torch.export.save, and its sha256.",
        ) from e
    leaves = {name.rsplit("/", 1)[-1] for name in members}
    if "archive_format" in leaves:
        return TORCH_EXPORT
    if "constants.pkl" in leaves or "data.pkl" in leaves:
        return TORCHSCRIPT
    raise ModelLoadError(
        f"PyTorch could not load {path}: a zip archive, but neither TorchScript nor torch.export.",
        hint="Save the model with torch.jit.save (format torchscript) or torch.export.save (format torch_export).",
    )


class PyTorchPredictor(FrameworkPredictor):
    name = "pytorch"
    package = TORCH

    _module: Any = None
    _format: str = ""

    @classmethod
    def library_version(cls) -> str:
        return super().library_version().split("+", 1)[0]

    def load(self, artifact_path: Path) -> None:
        torch = TORCH.load()
        device = self._device(torch)
        self._set_threads(torch)
        retain_freed_memory()
        self._format = artifact_format(artifact_path)
        try:
            if self._format == TORCHSCRIPT:
                with warnings.catch_warnings():
                    # torch announces TorchScript's deprecation on every load; the format is still a supported input.
                    for category in (DeprecationWarning, FutureWarning):
                        warnings.filterwarnings("ignore", message=r"`torch\.jit", category=category)
                    module = torch.jit.load(str(artifact_path), map_location=device)
                module.eval()
            else:
                # An exported program is already an inference graph; its module() refuses .eval().
                module = torch.export.load(str(artifact_path)).module().to(device)
        except Exception as e:  # torch raises RuntimeError, pickle and zip errors for damaged archives
            raise ModelLoadError(
                f"PyTorch could not load {artifact_path} ({self._format}): {e}",
                hint="Check that the artifact matches the installed torch version and its sha256 in the manifest.",
            ) from e
        self._module = module
        self._profiler = PyTorchProfiler(cuda=device.type == "cuda") if self.options.profile_dir is not None else None
        predict = self._make_predict(torch, module, device)
        self.bind_predict(predict if self._profiler is None else _marking_calls(torch, predict))
        if self._format == TORCHSCRIPT:
            # TorchScript's profiling executor records shapes on the first calls and optimises the graph after them.
            self.warm_up(_TORCHSCRIPT_PROFILING_RUNS)

    def _device(self, torch: Any) -> Any:
        device = self.options.device
        if device == "cpu":
            return torch.device("cpu")
        if device == "gpu":
            if not torch.cuda.is_available():
                raise DeviceUnavailableError(
                    f"device 'gpu' needs CUDA, but this torch build ({torch.__version__}) sees no CUDA device.",
                    hint="Install a CUDA build of torch (https://pytorch.org/get-started) on a GPU node, "
                    "or use --device cpu.",
                )
            return torch.device("cuda", self.options.device_index)
        raise self.no_backend()

    def _set_threads(self, torch: Any) -> None:
        if self.options.intra_op_threads is not None:
            torch.set_num_threads(self.options.intra_op_threads)
        wanted = self.options.inter_op_threads
        if wanted is not None and torch.get_num_interop_threads() != wanted:
            # Settable once per process, and only before any inter-op parallel work has started.
            try:
                torch.set_num_interop_threads(wanted)
            except RuntimeError as e:
                log.warning(
                    "torch inter-op threads stay %d (asked for %d): %s", torch.get_num_interop_threads(), wanted, e
                )

    def _make_predict(self, torch: Any, module: Any, device: Any) -> PredictFn:
        """The hot path, with every name bound here: one closure per case.

        Inputs are shared with torch (``from_numpy``, no copy); the sample library's arrays are writable, so the
        copy that a read-only array needs (torch may not write through one) is never taken in an evaluation.
        """
        inference_mode = torch.inference_mode
        from_numpy = torch.from_numpy
        copy_to_tensor = torch.tensor

        def to_tensor(x: np.ndarray) -> Any:
            # from_numpy shares the array's memory (no copy); torch warns on read-only arrays, so those are copied.
            return from_numpy(x) if x.flags.writeable else copy_to_tensor(x)

        tensor_type = torch.Tensor
        declared = self.model.outputs
        on_cpu = device.type == "cpu"

        def to_numpy(result: Any) -> list[np.ndarray]:
            tensors = [result] if isinstance(result, tensor_type) else list(result)
            if len(tensors) != len(declared):
                raise count_mismatch(
                    "the PyTorch model", "output", len(tensors), declared, verb="returned", error=PredictorError
                )
            return [t.numpy() if on_cpu else t.cpu().numpy() for t in tensors]

        if on_cpu and len(self.model.inputs) == 1 and len(declared) == 1:  # the common case, without loops

            def predict_one(inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
                x = inputs[0]
                with inference_mode():
                    result = module(from_numpy(x) if x.flags.writeable else copy_to_tensor(x))
                return [result.numpy()] if isinstance(result, tensor_type) else to_numpy(result)

            return predict_one
        if on_cpu:

            def predict(inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
                with inference_mode():
                    return to_numpy(module(*[to_tensor(x) for x in inputs]))

        else:

            def predict(inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
                with inference_mode():
                    return to_numpy(module(*[to_tensor(x).to(device, non_blocking=True) for x in inputs]))

        return predict

    def close(self) -> None:
        super().close()
        self._module = None
        self._profiler = None


def _marking_calls(torch: Any, predict: PredictFn) -> PredictFn:
    """``predict`` inside ``record_function(PREDICT_EVENT)``, so the profiler pairs its calls with model spans."""
    record_function = torch.profiler.record_function

    def predict_marked(inputs: Sequence[np.ndarray]) -> Sequence[np.ndarray]:
        with record_function(PREDICT_EVENT):
            return predict(inputs)

    return predict_marked
