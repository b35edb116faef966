from rps import rps

__all__ = ["rps"]
