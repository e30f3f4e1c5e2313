"""Across-stack tracing: spans at MLModelScope's trace levels, recorded cheaply and exported as one timeline.

Import from the submodules (``spans``, ``tracer``, ``chrome``, ``framework``, ``hardware``): this package re-exports
nothing, so that a module needing only ``spans.TraceLevel`` (the bus messages, the run contract) does not load
``psutil`` through ``hardware`` (tests/core/test_import_hygiene.py holds the line).
"""
