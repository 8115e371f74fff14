"""The web console under `/ui/`: server-rendered pages (Jinja2, autoescaped; htmx and uPlot
vendored under `static/vendor/`), sign-in with the server's authentication (OIDC authorization
code with PKCE, or an API token), sessions kept in the database behind a `__Host-` cookie, CSRF
tokens on every form. Pages call the same services as the API, with the signed-in principal.
"""
