"""Batching: the events of one rendered key within a window become ONE action that lists them all.

A mapping's `batch: {key, window, max}` (relay.protocol.mapping_config.BatchConfig) names the group
(`{{payload.groupKey}}`). Each matching event is recorded with its actions but not queued, and held
(`relay.hold.windows`: state `held`, the key's candidates zset `relay:batch:held:<key>`, the shared due
zset). When the window closes, or as soon as `max` events are held, a router builds the batch: the
first held event's first action, its `message` (or a wake's `text`) replaced by a numbered list of
every held event's message, oldest first. One script call then checks that the window is still
due (same window end), marks the listed events `batched`, records the batch as an event of its own
(delivery id `batch:<key>:<window end ms>`, so its action id is deterministic) and queues it like
any recorded event (inbox + session lane). Events that arrived after the list was read (or beyond
`max`) stay held for the next window. A crash before the script leaves the window due; after it,
the batch is an ordinary recorded event: delivered once, with one Idempotency-Key.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from redis import Redis

from relay.config import Settings
from relay.hold import windows as held
from relay.protocol.actions import action_id
from relay.protocol.compose import cut_text
from relay.protocol.mapping import Hold
from relay.protocol.mapping_config import BatchConfig
from relay.store import keys
from relay.store.events import new_event_id
from relay.store.lanes import lua_append

log = logging.getLogger("relay.batching")

ITEM_CHARS = 4000  # one event's text in the list is cut beyond this

# KEYS: due, candidates, inbox, batch event, dedupe, events index, by-source index, lane (or "").
# ARGV: window end ms (the due score read), now ms, now s, event ttl, dedupe ttl, batch event id,
# window ms, max, batch reason, n listed, listed ids..., then the batch event's fields.
_FLUSH = (
    f"""
local score = redis.call('ZSCORE', KEYS[1], KEYS[2])
if not score or tonumber(score) ~= tonumber(ARGV[1]) then return false end
local n = tonumber(ARGV[10])
for i = 1, n do
  if redis.call('HGET', '{keys.EVENT_PREFIX}' .. ARGV[10 + i], 'state') ~= 'held' then return false end
end
for i = 1, n do
  local ek = '{keys.EVENT_PREFIX}' .. ARGV[10 + i]
  redis.call('HSET', ek, 'state', 'batched', 'reason', ARGV[9] .. ': item ' .. i .. ' of event ' .. ARGV[6])
  redis.call('ZREM', KEYS[2], ARGV[10 + i])
end
local left = redis.call('ZCARD', KEYS[2])
if left == 0 then
  redis.call('ZREM', KEYS[1], KEYS[2])
else
  local nxt = tonumber(ARGV[2]) + tonumber(ARGV[7])
  if left >= tonumber(ARGV[8]) then nxt = tonumber(ARGV[2]) end
  redis.call('ZADD', KEYS[1], nxt, KEYS[2])
end
if n == 0 then return false end
if not redis.call('SET', KEYS[5], ARGV[6], 'NX', 'EX', ARGV[5]) then return false end
local fields = {{}}
for i = 11 + n, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[4], unpack(fields))
redis.call('EXPIRE', KEYS[4], ARGV[4])
redis.call('ZADD', KEYS[6], ARGV[3], ARGV[6])
redis.call('ZADD', KEYS[7], ARGV[3], ARGV[6])
redis.call('XADD', KEYS[3], '*', 'event', ARGV[6])
local nl = 0
if KEYS[8] ~= '' then nl = 1 end
local aid = cjson.decode(redis.call('HGET', KEYS[4], 'actions'))[1].id
"""
    + lua_append("nl", "KEYS[8]", "aid", "ARGV[3]", "ARGV[4]")
    + """
return ARGV[6]
"""
)


def _held_key(key: str) -> str:
    return keys.BATCH_HELD + key[: held.MAX_KEY]


def _meta_key(held_key: bytes | str) -> str:
    raw = held_key.decode() if isinstance(held_key, bytes) else held_key
    return keys.BATCH_META + raw[len(keys.BATCH_HELD) :]


def offer(redis: Redis, hold: Hold, event_id: str, ttl: int) -> bool:
    """Hold a recorded event for its key's batch (idempotent: a retry offers it again)."""
    cfg, key = hold.config, str(hold.key)
    assert isinstance(cfg, BatchConfig)
    hk = _held_key(key)
    window_ms = max(1, int(cfg.window * 1000))
    with redis.pipeline(transaction=False) as pipe:  # written before the offer a flush follows
        pipe.hset(_meta_key(hk), mapping={"key": key, "window_ms": window_ms, "max": cfg.max})
        pipe.expire(_meta_key(hk), ttl)
        pipe.execute()
    reason = f"batch {key}: held; sent with the other events of its window when it closes"
    return held.offer(redis, event_id, hk, cfg.window, ttl, reason, cfg.max)


def _text(actions: list[dict[str, Any]]) -> str:
    body = (actions[0].get("body") or {}) if actions else {}
    text = body.get("message") if actions[0].get("kind") == "agent" else body.get("text")
    text = str(text or "").strip()
    return text if len(text) <= ITEM_CHARS else text[:ITEM_CHARS] + " […]"


def summary(label: str, texts: list[str], window: float, max_bytes: int) -> str:
    """The batch's message: a header, then each event's text, numbered, oldest first."""
    head = f"{len(texts)} event{'s' if len(texts) != 1 else ''} for {label} (batched over {window:g} s):"
    items = [f"{i}. {t}" for i, t in enumerate(texts, 1)]
    return cut_text("\n\n".join([head, *items]), max_bytes)


def flush_one(redis: Redis, settings: Settings, raw: bytes, score: float, now: float) -> str | None:
    """Queue the batch of one closed window (`relay.hold.flush_due` calls it); returns its event id."""
    meta = {k.decode(): v.decode() for k, v in redis.hgetall(_meta_key(raw)).items()}
    most = int(meta.get("max", 50))
    window_ms = int(meta.get("window_ms", 30_000))
    key = meta.get("key") or raw.decode()[len(keys.BATCH_HELD) :]
    ids = [i.decode() for i in redis.zrange(raw, 0, most - 1)]
    with redis.pipeline(transaction=False) as pipe:
        for eid in ids:
            pipe.hmget(keys.event(eid), "state", "actions", "source")
        records = pipe.execute() if ids else []
    listed: list[str] = []
    texts: list[str] = []
    template: dict[str, Any] | None = None
    source = key.split(":", 1)[0]
    stale = []
    for eid, (state, actions_raw, src) in zip(ids, records, strict=True):
        actions = orjson.loads(actions_raw) if state == b"held" and actions_raw else []
        if not actions:  # expired, or flushed already: never held again
            stale.append(eid)
            continue
        listed.append(eid)
        texts.append(_text(actions))
        if template is None:
            template, source = actions[0], (src or b"").decode() or source
    if stale:
        redis.zrem(raw, *stale)
    window_end = int(score)
    delivery_id = f"batch:{key}:{window_end}"
    batch_id = new_event_id()
    fields: list[Any] = []
    lane = ""
    if template is not None:
        label = key.split(":", 1)[1] if ":" in key else key
        body = dict(template.get("body") or {})
        text_field = "message" if template.get("kind") == "agent" else "text"
        body[text_field] = summary(label, texts, window_ms / 1000, settings.max_message_bytes)
        aid = action_id(source, delivery_id, 0)
        actions_json = orjson.dumps([{"id": aid, "kind": template.get("kind", "agent"), "body": body}])
        if body.get("sessionKey"):
            lane = keys.lane(body["sessionKey"])
        fields = [
            "source",
            source,
            "delivery_id",
            delivery_id,
            "received_at",
            repr(now),
            "state",
            "queued",
            "headers",
            b"{}",
            "body",
            orjson.dumps({"batch": key, "window_end_ms": window_end, "events": listed}),
            "actions",
            actions_json,
            "action_count",
            1,
            "reason",
            f"batch {key}: {len(listed)} event(s) of one window, sent as one action",
        ]
    reason = f"batch {key}: sent as one action with the others of its window"
    done: Any = redis.eval(
        _FLUSH,
        8,
        held.DUE,
        raw,
        keys.INBOX,
        keys.event(batch_id),
        keys.dedupe(source, delivery_id),
        keys.EVENTS,
        keys.events_by_source(source),
        lane,
        window_end,
        int(now * 1000),
        repr(now),
        settings.event_ttl_seconds,
        settings.dedupe_ttl_seconds,
        batch_id,
        window_ms,
        most,
        reason,
        len(listed),
        *listed,
        *fields,
    )
    if not done:
        return None
    log.info("batch window closed; %d event(s) of %s sent as event %s", len(listed), key, batch_id)
    return batch_id
