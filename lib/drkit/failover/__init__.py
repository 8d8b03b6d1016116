"""Failover: the plan, authenticated alert webhooks, and reconciling DNS and reserved IPs to the desired site."""
