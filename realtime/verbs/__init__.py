"""Every verb module; importing this package registers their handlers in protocol.REGISTRY.

A new verb lives in its own module here (or anywhere) and is added to this list.
"""

from realtime.verbs import bulk, calls, presence, selection, session, supervisor, work

__all__ = ["bulk", "calls", "presence", "selection", "session", "supervisor", "work"]
