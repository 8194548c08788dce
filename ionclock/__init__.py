"""ionclock: run trapped-ion atomic clocks, in the lab and against their digital twin."""

__version__ = "0.1.0"
