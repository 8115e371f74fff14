"""Interfaces: the CLI (one module per noun), later HTTP and the Python SDK.

They parse, authorise, call one service and render; no domain logic lives here.
"""
