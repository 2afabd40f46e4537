"""seekport: an OpenAI- and DeepSeek-compatible gateway for DeepSeek-family models."""

__version__ = "0.1.0"
