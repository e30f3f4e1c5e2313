"""MLModelScope operator: the cluster face of MLModelScope.

A user applies an ``Evaluation``; the operator resolves its models, frameworks and datasets from the cluster's
``Model``/``Framework``/``Dataset`` resources, expands the matrix into runs, creates one predictor Job per run on
nodes of the right CPU architecture and accelerator, follows the Jobs, and writes the results the collector
stored (never its own computation) and a validity verdict into the Evaluation's status.

The package is a directory inside the ``mlmodelscope`` namespace, never a top-level ``operator`` (which would
shadow Python's own module).
"""
