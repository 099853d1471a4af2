"""Tests of the gateway package, by module."""
