"""ionclock.servo."""
