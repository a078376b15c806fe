-- Hold an action whose source or gateway an operator paused (relay.store.pause.hold_if_paused).
-- KEYS: paused hash, held-sets index, action record. ARGV: action id, now, held-set key prefix
-- (keys.PAUSED_HELD_PREFIX), then the pause fields to look at (source first). Returns the field
-- that holds the action, or false.
return pause_hold(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], {unpack(ARGV, 4)})
