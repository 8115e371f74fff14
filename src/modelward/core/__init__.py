"""Pure domain code: digests, manifests, DSSE, in-toto statements, Merkle math.

Nothing here opens files or sockets, reads the clock or holds sessions; callers pass bytes and
time in. Imports only the standard library, `cryptography` and `rfc8785` (a pure function).
"""
