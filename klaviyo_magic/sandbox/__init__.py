"""A local, Klaviyo-compatible API server for tests, notebooks and benchmarks (see docs/sandbox.md).

It speaks the part of Klaviyo's REST API klaviyo-magic uses, over real HTTP on loopback, following
docs/klaviyo-api.md. It is written independently of the client so that it can catch the client's mistakes.
"""

from .control import Sandbox
from .requestlog import RequestRecord

__all__ = ["RequestRecord", "Sandbox"]
