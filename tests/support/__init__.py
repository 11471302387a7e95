"""Test helpers shared by the test layers (fakes of external services)."""
