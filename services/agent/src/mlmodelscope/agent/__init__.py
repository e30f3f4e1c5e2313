"""MLModelScope agent: loads a model through a framework predictor and runs an evaluation."""
