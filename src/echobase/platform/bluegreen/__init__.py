"""Blue-green on top of the two layers: deploy, switch, rollback, down, history."""
