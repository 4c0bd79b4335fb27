"""The inspector: the web page at ``/`` that shows what arrived, behind the admin token.

    pages.py      the login form, the page shell, its script and stylesheet
    endpoints.py  GET /api/sources, GET /api/stats, POST /api/test-event
    samples.py    the configured sources, the spec's examples, the in-process test request
    templates/, static/   package data: HTML templates, inspector.js, inspector.css

The inspector sits above ``capigate.http`` (its handlers take the http layer's request,
gateway and outcome; the login cookie is ``capigate/http/session.py``, which the admin API
also accepts) and nothing in ``capigate.http`` imports it: its routes are listed with the
others in ``capigate/gateway.py``.
"""
