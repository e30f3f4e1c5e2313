"""Framework-free analyses of stored runs: bootstrap confidence intervals, the compare verdict, the regression rule,
latency distributions, per-layer breakdowns, report tables and a tiny SVG chart renderer.

Everything here works on plain numbers (per-query latencies, spans, results) so that the collector's API and web
UI and the CLI's ``report`` compute the same figures with the same code; nothing here imports a web framework.
"""
