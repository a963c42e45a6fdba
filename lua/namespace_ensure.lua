-- Creates a namespace if it does not exist, and sets its TTL if one is given.
-- KEYS: 1 namespace hash (c = created ms, t = TTL s stamped on properties, g = generation)
-- ARGV: 1 now (ms), 2 TTL in seconds ('' = leave as it is)
-- Returns {created ms, TTL s (0 = none), generation, created now (0|1)}
local key = KEYS[1]
local fresh = redis.call('HSETNX', key, 'c', ARGV[1])
redis.call('HSETNX', key, 'g', 0)
if ARGV[2] ~= '' then redis.call('HSET', key, 't', ARGV[2]) end
local v = redis.call('HMGET', key, 'c', 't', 'g')
return {tonumber(v[1]), tonumber(v[2] or '0'), tonumber(v[3]), fresh}
