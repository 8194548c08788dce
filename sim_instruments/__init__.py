"""ionclock.sim_instruments."""
