"""The operator's tests: planning and Job building without a cluster, and the real operator (kopf) against KMock.

No fixtures of their own: KMock runs in each test's event loop, so the harness is asynchronous context managers
(``kube_api``, ``operator`` in tests/support/operator_harness.py) that a test enters itself, and the pure inputs
(the digits catalog, an Evaluation spec) are builders in tests/support/operator_catalog.py.
"""
