"""Thin routes: parse, call a service, map the result."""
