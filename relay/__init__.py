"""openclaw-relay: a durable, verifying webhook relay in front of an OpenClaw gateway.

Transforms import what they need from here::

    from relay import Event, AgentAction, WakeAction
"""

from relay.protocol.actions import AgentAction, WakeAction
from relay.protocol.event import Event

__all__ = ["AgentAction", "Event", "WakeAction"]
