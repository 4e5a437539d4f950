"""``electra serve``: the HTTP service (FastAPI + uvicorn) and its web page.

``app.py`` declares the routes and request types, ``batching.py`` the queue that batches inputs across requests
by tokens, ``limits.py`` the limits and every error class the API answers, ``lingering.py`` the lingering close
that gets an early answer (413) to clients still writing their body, ``metrics.py`` the Prometheus metrics,
``server.py`` loading models and running uvicorn, ``static/index.html`` the page at ``/``.
"""
