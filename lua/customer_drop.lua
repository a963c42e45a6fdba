-- Removes entries from one customer's index (service/store/customers.py) whose
-- session was read and found gone or not tied to the customer: each only if
-- its score is still the one read with it (no write has touched it since) and
-- older than the guard by this node's clock (a write touches the entry before
-- its script ties the session: the guard covers that gap).
-- KEYS: 1 the customer's index (zset)
-- ARGV: 1 guard (ms), 2.. two per entry: member, score as read
-- Returns how many entries were removed.
local key = KEYS[1]
local t = redis.call('TIME')
local oldest = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[1])
local removed = 0
for n = 2, #ARGV, 2 do
  local score = redis.call('ZSCORE', key, ARGV[n])
  if score and tonumber(score) == tonumber(ARGV[n + 1]) and tonumber(score) < oldest then
    redis.call('ZREM', key, ARGV[n])
    removed = removed + 1
  end
end
return removed
