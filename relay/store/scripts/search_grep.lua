-- Text search inside Redis (relay.store.search), so payloads never cross the network.
-- KEYS: event records. ARGV: the text, "1" to ignore case. Returns the 1-based positions of the
-- events whose body or headers (as stored: raw body, headers as JSON) contain the text.
local needle, fold = ARGV[1], ARGV[2] == '1'
local found = {}
for i, key in ipairs(KEYS) do
  local parts = redis.call('HMGET', key, 'body', 'headers')
  for _, text in ipairs(parts) do
    if text then
      if fold then text = string.lower(text) end
      if string.find(text, needle, 1, true) then
        found[#found + 1] = i
        break
      end
    end
  end
end
return found
