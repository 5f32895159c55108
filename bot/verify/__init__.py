"""Verification: registry signatures, provenance (sigstore), risk signals."""
