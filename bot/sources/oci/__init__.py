"""OCI registries: validated documents (models), credentials, the distribution-API client."""
