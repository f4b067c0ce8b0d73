"""canopycli: push audience segment files to a Deployteq (CanopyDeploy) batch webhook.

The package's folders follow the architecture: ``pipeline/`` is the data's journey (read ->
normalize -> de-duplicate -> batch -> stage -> run -> report), ``deployteq/`` the far side
(delivery, the webhook transport, the daily quota), ``store/`` the state folder (journal,
baselines, locks), ``emulators/`` the local sandbox, ``cli/`` the thin typer layer on top;
``engagements/`` the way back (pull, report); ``config``, ``model`` and ``errors`` are shared by all.

The public Python API (see ``api``): ``push``, ``sync``, ``retry``, returning a ``Report``;
``pull_engagements`` and ``engagements_report``, returning what their ``--json`` prints.
"""

__version__ = "1.0.0"

from .api import engagements_report, pull_engagements, push, retry, sync  # noqa: E402
from .config import Config, load_config  # noqa: E402
from .errors import CanopyError, ExitCode  # noqa: E402
from .pipeline.report import Report  # noqa: E402

__all__ = [
    "CanopyError",
    "Config",
    "ExitCode",
    "Report",
    "__version__",
    "engagements_report",
    "load_config",
    "pull_engagements",
    "push",
    "retry",
    "sync",
]
