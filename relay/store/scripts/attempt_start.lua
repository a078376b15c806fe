-- Begin one send of an action after the rate cap's wait (relay.delivery.gate.start): take its send
-- lock, then count the attempt and mark the record delivering.
-- KEYS: send lock, action. ARGV: lock TTL (ms), now.
-- Returns the attempt's number, or 0 when another copy of the job holds the lock.
return attempt_start(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
