"""Operating the local engine's runs (status / cancel / redrive); the parts shared with the
deployed stack and the HTTP API live in pagemill.operate."""
