"""lensd: the Python client of the lensd interpretability server.

    import lensd
    client = lensd.Client("127.0.0.1:50051")          # token from $LENSD_TOKEN
    result = client.decode("And God said", lens="tuned")
    result.to_dataframe()                               # one row per layer and position
"""
__version__ = "0.1.0"

from lensd.errors import LensdError, VersionError  # noqa: E402
from lensd.client import Client  # noqa: E402
from lensd.results import DecodeResult, GeneratedToken  # noqa: E402
from lensd import attribution, interventions, patching  # noqa: E402
from lensd.interventions import (ablate, ablate_heads, clamp_sae, keep_only, patch,  # noqa: E402
                                 project_out, scale, set_value, steer)

__all__ = ["Client", "attribution", "interventions", "patching", "DecodeResult", "GeneratedToken",
           "LensdError", "VersionError", "ablate", "ablate_heads", "clamp_sae", "keep_only",
           "patch", "project_out", "scale", "set_value", "steer", "__version__"]
