"""ionclock.drivers."""
