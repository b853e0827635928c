"""ml-sandbox: a local replica of Wikimedia's Lift Wing serving stack."""

__version__ = "0.1.0"
