"""The DigitalOcean Functions edge: environment contract, configuration, notifications, the handler."""
