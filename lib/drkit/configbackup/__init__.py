"""Config backups: sources, the DigitalOcean inventory, encrypted tar archives, their catalog, DNS restore."""
