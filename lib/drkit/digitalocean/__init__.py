"""The DigitalOcean API through pydo, wrapped once (errors, retries, deadlines)."""
