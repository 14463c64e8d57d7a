"""optcheck: golden reference and conformance suite for the Keras optimizer API."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("optcheck")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
