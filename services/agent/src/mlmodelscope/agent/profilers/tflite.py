"""Why the TensorFlow Lite predictor has no FRAMEWORK-level profiler: LiteRT's Python API cannot time operators.

This module exists so the answer is written once, where the other frameworks keep their profilers, and so the
predictor can say it when a run is traced at FRAMEWORK level, instead of silently producing no operator spans.
Nothing here fakes spans: a run of the ``tflite`` framework has MODEL-level spans (the whole ``invoke``) and no
FRAMEWORK-level ones, and its result carries no ``framework_trace``.

What was checked, in ai-edge-litert 2.3.0 (the wheel the agent installs):

* ``ai_edge_litert.interpreter.Interpreter`` (and ``InterpreterWithCustomOps``): its pybind wrapper
  (``_pywrap_litert_interpreter_wrapper.InterpreterWrapper``) offers AllocateTensors, Invoke, Set/GetTensor,
  ResizeInputTensor, the node and tensor metadata, ModifyGraphWithDelegate and SetNumThreads; no profiler.
  TFLite's C++ ``Interpreter::SetProfiler`` / ``tflite::profiling::BufferedProfiler`` are not bound, and
  ``InterpreterWithCustomOps`` only registers op kernels (``Register(MutableOpResolver*)``), which cannot wrap
  the built-in kernels or the XNNPACK delegate that runs them.
* ``ai_edge_litert.compiled_model.CompiledModel`` (the LiteRT 2 API): ``libLiteRt.so`` exports the C profiler
  (``LiteRtCompiledModelGetProfiler``, ``LiteRtStartProfiler``, ``LiteRtGetProfilerEvents``), but the Python
  ``Options`` have no switch that turns runtime profiling on (``Options._as_flat_kwargs`` passes CPU / GPU / NPU
  settings only; no ``enable_profiling``), and ``CompiledModelWrapper`` never hands out its
  ``LiteRtCompiledModel`` handle, so the profiler cannot be reached through ctypes either.
* ``ai_edge_litert.tools.benchmark_litert_model`` times whole runs with ``time.perf_counter`` (no per-op
  figures); the C++ ``benchmark_model`` binary with ``--enable_op_profiling`` is not in the wheel.

What would make it possible: a Python binding of ``Interpreter::SetProfiler`` (or of LiteRT's runtime-options
profiling for ``CompiledModel``) returning the profiler's events (op name, node index, start and duration in
µs); an adapter like ``profilers/onnxruntime.py`` could then align them under the model spans.
"""

from __future__ import annotations

UNAVAILABLE_REASON = (
    "TensorFlow Lite records no operator spans: ai-edge-litert's Python API has no op profiler (the Interpreter "
    "binds no Interpreter::SetProfiler, and CompiledModel's options cannot enable LiteRT's runtime profiling), "
    "so a tflite run is traced down to MODEL level only (docs/tracing.md)."
)
