"""The Python SDK (Client, AsyncClient) arrives with #7; it imports only protocol and errors."""
