"""Framework predictors, one small module each, registered as ``mlmodelscope.predictors`` entry points."""
