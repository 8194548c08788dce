"""ionclock.procedures."""
