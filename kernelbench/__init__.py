"""kernelbench: score GPU kernels by their distance to the hardware's speed of light."""

__version__ = "0.1.0"
