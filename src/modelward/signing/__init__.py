"""Signers and verifiers: ECDSA (P-256, P-384, P-521) and Ed25519 keys, X.509 chains.

Loads and writes key files; holds no registry state. Later: KMS and PKCS#11 signers.
"""
