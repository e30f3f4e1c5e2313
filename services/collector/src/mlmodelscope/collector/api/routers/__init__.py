"""One router per resource: health, runs, evaluations, metrics."""
