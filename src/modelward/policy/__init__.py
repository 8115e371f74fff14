"""Policy adapters: the CEL engine, the YAML loader, the default policies, facts and VSAs.

`modelward.core.policy` holds the pure verdict logic; this package binds it to a real expression
engine (`cel-expr-python`), reads policy files, builds facts documents and wraps decisions as SLSA
verification summaries. Nothing here touches the database or the CLI.
"""
