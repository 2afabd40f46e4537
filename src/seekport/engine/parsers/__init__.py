"""Output parsers: reasoning (<think>) now, tool calls with #3."""
