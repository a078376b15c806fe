"""Delivery to the gateway: one attempt, its answer, the WebSocket RPC, the circuit and the rate cap.

`relay.delivery.deliver` is the RQ job's function path: jobs queued by any version run under it."""

from relay.delivery.attempt import deliver

__all__ = ["deliver"]
