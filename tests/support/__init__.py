"""Real local services for the tests (npm registry, OCI registry, GitHub-shaped API) and helpers."""
