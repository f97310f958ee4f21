"""Command handlers and run workers: plain functions of (message, dependencies)."""
