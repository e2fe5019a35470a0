"""Experiment trackers (`--track NAME`): the contract in base, the built-in tensorboard and mlflow.
Each imports its package only when used, so that listing them costs nothing."""
