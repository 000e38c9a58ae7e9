"""The two-party engine: ring and fixed point, transport, cost meter, providers, secure layers."""
