"""Health: probes of what users see, data-protection checks against the RPO, state transitions and metrics."""
