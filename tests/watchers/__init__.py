"""Tests for the watchers."""
