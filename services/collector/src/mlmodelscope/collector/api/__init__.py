"""The REST API: the app factory (``app.create_app``), one router per resource, response models and dependencies.

Nothing is re-exported here: importing a light submodule (``docs``, ``openapi_document``) must not build the
FastAPI app's import graph.
"""
