"""Project exceptions: each names what went wrong and what is allowed."""


class CartAbmError(Exception):
    """Base class of every error cart-abm raises on purpose."""


class ParamError(CartAbmError, ValueError):
    """A parameter file, override or value is invalid (CLI exit status 2)."""


class SimulationError(CartAbmError, RuntimeError):
    """A run cannot go on (numerical guard, inconsistent state)."""
