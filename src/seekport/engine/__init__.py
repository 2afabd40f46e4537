"""Local inference. Knows nothing of HTTP, keys or tenants.

Only ``gateway.backends.local`` imports this package, lazily, so a gateway without local
models never loads llama.cpp.
"""
