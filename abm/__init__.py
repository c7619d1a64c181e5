"""cart-abm: agent-based tissue simulation of CAR-T therapy for acute lymphoblastic leukemia."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("cart-abm")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.1.0"
