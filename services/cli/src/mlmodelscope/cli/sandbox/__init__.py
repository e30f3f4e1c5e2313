"""``mlmodelscope sandbox``: the cluster path (kubectl, operator, Jobs, pods) on one machine, without a cluster.

KMock plays the Kubernetes API server (``emulator``), a kubelet stand-in runs each Job's container command as a
local process (``kubelet``), the repository's artifacts are served over HTTP on 127.0.0.1 (``artifacts``), and
``up`` starts all of it with NATS, the collector and the operator (``up``). docs/sandbox.md explains it.
"""
