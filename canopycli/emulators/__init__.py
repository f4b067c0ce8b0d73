"""Local emulators of Deployteq on loopback, for trying canopycli and for tests.

``server`` is the generic part (a loopback HTTP server with routes and fault injection);
``webhook`` is the Webhook Receiver (the ``Sandbox``), a set of routes on it.
"""
