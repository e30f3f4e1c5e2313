"""Declarative pre- and post-processing: the step schema Model manifests use, and the code that runs it.

Frameworks only run the model; turning dataset samples into input tensors and outputs into ranked classes happens
here, once, for all of them, so their results are comparable.

Import from the submodules (``steps``, ``image``, ``preprocess``, ``postprocess``): this package re-exports nothing,
so that the manifest schema (which needs only ``steps``) does not load PIL and numpy through ``image``
(tests/core/test_import_hygiene.py holds the line).
"""
