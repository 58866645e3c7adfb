"""Imports every subcommand module so that each registers itself on the shared `app`."""

# Keep one line per subcommand module.
from . import edit  # noqa: F401
from . import convert  # noqa: F401
from . import benchmark  # noqa: F401
from . import prepare  # noqa: F401
from . import train  # noqa: F401
from . import benchmark_speed  # noqa: F401
from . import serve  # noqa: F401
