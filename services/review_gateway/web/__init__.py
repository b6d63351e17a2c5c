"""The reviewer web workspace: a second edge over :mod:`services.review_gateway.ops`.

:mod:`.app` builds the Starlette app and the uvicorn server the gateway runs;
:mod:`.reviewer` and :mod:`.admin` are the routes, :mod:`.render` what the
reviewer page shows of a lease, :mod:`.security` headers, CSRF and login
throttling; ``templates/`` and ``static/`` are served as they are (no build).
"""
