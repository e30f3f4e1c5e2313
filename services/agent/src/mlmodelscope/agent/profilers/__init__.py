"""Framework-level profilers: one small module per framework, each a ``core.tracing.FrameworkProfiler``.

Modules here import nothing from their framework at import time (they only read its profile output and call
methods on objects the predictor created), so importing one never requires the framework to be installed.
"""
