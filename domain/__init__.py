"""Heddle's model: definitions, graphs, aggregates, events, commands, expressions.

Pure: no I/O, no clock, no SDK imports.
"""
