"""The REST API: the app factory, one router per resource, response models and dependencies."""

from mlmodelscope.collector.api.app import create_app

__all__ = ["create_app"]
