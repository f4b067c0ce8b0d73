"""canopycli: push audience segment files to a Deployteq (CanopyDeploy) batch webhook.

The library is a pipeline whose modules follow the data:
``read`` -> ``normalize`` -> ``batch`` -> ``send`` -> ``report``, orchestrated by ``push``;
``config`` loads connector configs, ``errors`` holds the error tree and exit codes,
``sandbox`` emulates the webhook. ``cli`` is a thin typer layer on top.
"""

__version__ = "1.0.0"
