-- Take or keep the mapping lease (relay.worker.mapper): one mapper at a time.
-- KEYS: the lease. ARGV: holder, lease ms. Returns 1 when kept, 2 when newly taken, 0 when
-- another holder has it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 2 end
return 0
