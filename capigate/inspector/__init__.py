"""The inspector: the web page at ``/`` that shows what arrived, behind the admin token.

    session.py    the login cookie (an HMAC of the admin token; HttpOnly, SameSite=Strict)
    pages.py      the login form, the page shell, its script and stylesheet
    endpoints.py  GET /api/sources, GET /api/stats, POST /api/test-event
    samples.py    the configured sources, the spec's examples, the in-process test request
    routes.py     the routing table merged into the gateway's
    templates/, static/   package data: HTML templates, inspector.js, inspector.css

Nothing is imported here, so that ``capigate.http.api`` can use the session check without
an import cycle; the gateway imports ``capigate.inspector.routes``.
"""
