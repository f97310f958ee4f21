"""Adapters: Kafka, PostgreSQL, LLM providers, settings, the composition root, the dev stack."""
