"""One gateway node: its one route list, and the factories that build it.

This module sits above ``capigate.http`` and ``capigate.inspector`` and is the only one that
imports both: the inspector's handlers use the http layer, never the other way round.
"""

from __future__ import annotations

import os
from pathlib import Path

import capigate.worker_env as worker_env
from capigate.config import Config, load_config
from capigate.http import api, app, appsflyer, axon
from capigate.http.app import GatewayApp
from capigate.http.idle import LISTEN_PORT_ENV, IdleReaper
from capigate.http.routing import Route, Router
from capigate.inspector import endpoints, pages
from capigate.logs import configure_logging
from capigate.metrics import shared_dir
from capigate.store.base import Store

__all__ = ["ROUTES", "app_from_env", "create_app"]

# journaled=False: operators' and the inspector's reads, not the traffic the journal is for
# (the inspector's test events are journaled as the requests to the ingest endpoints they are).
ROUTES = [
    Route("POST", "/v1/event", axon.post_event),
    Route("POST", appsflyer.PREFIX + "{app_id}", appsflyer.post_in_app_event),
    Route("GET", "/api/events", api.get_events, journaled=False),
    Route("GET", api.EVENT_PREFIX + "{id}", api.get_event, journaled=False),
    Route("GET", "/api/requests", api.get_requests, journaled=False),
    Route("GET", api.REQUEST_PREFIX + "{request_id}", api.get_request, journaled=False),
    Route("GET", "/api/outbox", api.get_outbox, journaled=False),
    Route("POST", "/api/replay", api.post_replay, journaled=False),
    Route("GET", "/healthz", app.get_healthz, journaled=False),
    Route("GET", "/readyz", app.get_readyz, journaled=False),
    Route("GET", "/openapi.json", app.get_openapi, journaled=False),
    Route("GET", "/metrics", app.get_metrics, journaled=False),
    Route("GET", "/", pages.get_page, journaled=False),
    Route("POST", "/login", pages.post_login),  # journaled: failed logins leave a trace
    Route("GET", "/login", pages.get_login, journaled=False),
    Route("POST", "/logout", pages.post_logout, journaled=False),
    *(Route("GET", path, pages.get_asset, journaled=False) for path in pages.ASSETS),
    Route("GET", "/api/sources", endpoints.get_sources, journaled=False),
    Route("GET", "/api/stats", endpoints.get_stats, journaled=False),
    Route("POST", "/api/test-event", endpoints.post_test_event, journaled=False),
    Route("GET", "/api/quality", endpoints.get_quality, journaled=False),
]


def create_app(config: Config, store: Store | None = None, *, relay: bool = True) -> GatewayApp:
    return GatewayApp(config, Router(ROUTES), store, relay=relay)


def app_from_env() -> GatewayApp:
    """Factory for the server's workers: the CLI passes its resolved options by environment,
    since workers are separate processes."""
    from capigate.serving import die_with_parent, on_worker_stop, worker_signals  # imports granian: not in-process

    worker_signals()
    die_with_parent()
    config = load_config(Path(os.environ[worker_env.CONFIG]), text=os.environ.get(worker_env.CONFIG_TEXT))
    db = os.environ.get(worker_env.DB)
    if db:
        config.store.url = db
    configure_logging(config.server.log_format)
    gateway = create_app(config, relay=worker_env.relaying())
    on_worker_stop(gateway.stopping)
    gateway.settle_gc = True
    gateway.metrics.share_dir = shared_dir()  # this server's workers share their counters
    port = os.environ.get(LISTEN_PORT_ENV)
    if port:
        server = config.server
        gateway.idle_reaper = IdleReaper(int(port), silent_s=server.header_timeout_s, idle_s=server.idle_timeout_s)
    return gateway
