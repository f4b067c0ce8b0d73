"""The relay: a long-running HTTP service that takes profile events, queues them durably in the
state folder's journal and flushes them to Deployteq per segment, as journaled runs.

Modules, in the order an event passes through them:

- ``app``: the ASGI app (starlette): routes, bearer tokens, body limits, content types; it talks
  to a ``Core`` (``core``) only;
- ``signature``: Copernica's signed callbacks (Digest + draft-cavage RSA-SHA256, keys from DNS or
  a pinned PEM file);
- ``intake``: normalizes records as ``push`` does and appends them to the queue, one transaction
  for all the requests waiting (group commit); a request is answered once its events are committed;
- ``flusher``: per segment, a batch leaves at ``batch_size`` events or when the oldest is older
  than ``flush_interval``; latest event per identifier wins, echoes of the baseline are dropped;
  each flush is a run in the journal (command ``relay``);
- ``metrics``: the Prometheus registry both sides count into;
- ``service``: the wiring: uvicorn, the flusher thread, signals, ``--drain``, restart recovery.

The payload adapters (the custom connector's engine payload, Copernica callbacks) live in
``pipeline/payloads.py``: ``push --format engine|copernica`` reads them from files too.
"""
