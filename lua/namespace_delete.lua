-- Deletes a namespace in constant time: its generation moves on, so every key
-- of its sessions (which carry the generation in their names) is orphaned at
-- once; the sweeper reclaims them later. Its TTL goes with it.
-- KEYS: 1 namespace hash
-- ARGV: 1 the generation the caller saw (the one queued for sweeping)
-- Returns 1 when this call deleted it, 0 when it did not exist or was already moved on.
local key = KEYS[1]
if redis.call('HGET', key, 'g') ~= ARGV[1] or redis.call('HEXISTS', key, 'c') == 0 then return 0 end
redis.call('HDEL', key, 'c', 't')
redis.call('HINCRBY', key, 'g', 1)
return 1
