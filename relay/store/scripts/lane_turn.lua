-- Whether an action may be sent now (relay.store.lanes.my_turn).
-- KEYS: lane, action. ARGV: action id, action key prefix.
-- 1: this action's turn (or no lane); 0: marked waiting.
return lane_turn(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
