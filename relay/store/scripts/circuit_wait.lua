-- Whether a worker may send to a gateway now (relay.delivery.circuit.may_send).
-- KEYS: circuit, level, probe. ARGV: probe TTL (ms). Returns the milliseconds to wait (0: send now).
return circuit_wait(KEYS[1], KEYS[2], KEYS[3], ARGV[1])
