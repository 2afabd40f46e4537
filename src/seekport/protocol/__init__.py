"""Wire models of the OpenAI/DeepSeek API (pydantic v2) and SSE framing. No I/O.

Shared by the server and the SDK.
"""
