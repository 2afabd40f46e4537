"""Policy and orchestration: auth, accounting, backends, the chat service. No web framework."""
