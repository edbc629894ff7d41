"""CSRF on Datasette 0.65 (asgi-csrf): which of the plugin's POSTs skip it, and the check the import views make
themselves once they know how the request is authenticated."""

from __future__ import annotations

import secrets

# Set on the ASGI scope by ``skip_csrf`` when Datasette 0.65's token check is left to ``import_view``.
IMPORT_PATH = "/api/import"
PERSIST_PATH = "/api/persist/listings"  # the old store's JSON import URL

CSRF_DEFERRED = "datasette_glyph.csrf_deferred"


def skip_csrf(datasette, scope) -> bool:
    """Datasette 0.65: take over the CSRF check for ``POST /api/import``.

    asgi-csrf looks for a token inside a cookie-authenticated multipart body, and with current python-multipart
    releases that parse crashes (a 500). ``import_view`` applies the same rule itself, before reading the body:
    a request carrying cookies must send the ``ds_csrftoken`` cookie's value as ``X-CSRFToken`` (asgi-csrf has
    already let through requests with a matching header or no cookies; it only asks this hook about the rest)
    or authenticate with ``Authorization: Bearer``. Datasette 1.0a checks Origin / Sec-Fetch-Site instead and
    never calls this hook.
    """
    if scope.get("method") == "POST" and scope.get("path") in (
        datasette.urls.path(IMPORT_PATH),
        datasette.urls.path(PERSIST_PATH),
    ):
        scope[CSRF_DEFERRED] = True
        return True
    return False


def csrf_ok(request) -> bool:
    if not request.scope.get(CSRF_DEFERRED):
        return True
    if request.headers.get("authorization", "").startswith("Bearer "):
        return True
    token = request.scope["csrftoken"]()
    # as bytes: compare_digest refuses str with non-ASCII characters, which a header may carry
    return secrets.compare_digest(request.headers.get("x-csrftoken", "").encode(), token.encode())
