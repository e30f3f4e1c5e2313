"""The ``mlmodelscope`` command line."""
