"""One encoder per wire format: typed events (``protocol.events``) in, that format's bytes out.

An encoder owns everything format-specific about an answer: the role chunk, where usage goes,
``[DONE]``, in-band error events, and the non-stream body (the aggregate of the same events).
"""
