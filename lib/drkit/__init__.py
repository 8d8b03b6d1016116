"""drkit: disaster-recovery functions for DigitalOcean (shared library).

Vendored into every function of the `dr` package; see docs/architecture.md.
"""

__version__ = "0.1.0"
