"""The CLI's tests: the installed ``mlmodelscope`` command run as a user runs it (``tests.support.cli.run_cli``), its
read commands against a real collector, ``report``, ``validate`` and the checks ``evaluate`` makes before it
starts anything.

No fixtures of their own: the shared ones (``web``, ``page``, ``sqlite_url``, ...) are in tests/conftest.py; tests
that run the whole of ``evaluate`` are in tests/e2e.
"""
