"""The dashboard at ``/``: server-rendered pages (Jinja2) with the vendored htmx and small JS modules of our own for
the live world (canvas, charts, the event stream). It reads what the JSON API reads and changes nothing except
through the JSON API; every asset ships in this package (``static/``), nothing is fetched or built at run time.
See docs/dashboard.md for why it is built this way. ``soulfra.api.create_app`` includes ``routes.dashboard_router``
(imported there when the app is made: the routes use the API's access control, so this package imports nothing).
"""
