"""Helpers shared by every isvc's model servers: start-up, limits, errors, the predictor hop.

This package is what the services import at run time (locally and in the images); it must not
import the rest of `sandbox` (the CLI, the catalog), which is not installed in the images.
"""
