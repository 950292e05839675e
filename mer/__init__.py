"""mer: spontaneous facial micro-expression recognition with a 3D CNN."""

__version__ = "0.1.0"
