-- Give up the mapping lease (relay.worker.mapper), if held: a stopping router hands over at once.
-- KEYS: the lease. ARGV: holder. Returns 1 when released.
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
