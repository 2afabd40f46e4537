"""Routing: model groups of deployments, load balancing, retries, breakers and fallbacks."""
