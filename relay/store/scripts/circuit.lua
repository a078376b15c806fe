-- The gateway's circuit breaker (relay.delivery.circuit): a function for the scripts that check it
-- before a send.

-- Milliseconds to wait before sending (0: send now). While the circuit is open: what is left of its
-- pause, at least 200. After a pause (its level key is there) one send is the probe: the first to
-- ask takes it (held `probe_ttl_ms`), the others wait a second.
local function circuit_wait(circuit, level, probe, probe_ttl_ms)
  if redis.call('EXISTS', circuit) == 1 then
    return math.max(redis.call('PTTL', circuit), 200)
  end
  if redis.call('EXISTS', level) == 1 and not redis.call('SET', probe, '1', 'NX', 'PX', probe_ttl_ms) then
    return 1000
  end
  return 0
end
