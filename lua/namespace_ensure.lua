-- Creates a namespace if it does not exist, and sets its TTL if one is given.
-- KEYS: 1 namespace hash (c = created ms, t = TTL s stamped on properties, g = generation)
-- ARGV: 1 now (ms), 2 TTL in seconds ('' = leave as it is), 3 the generation of a namespace never seen (the time, ms)
-- Returns {created ms, TTL s (0 = none), generation, created now (0|1)}
--
-- A record that is gone starts at a generation of its own, not at 0: if an
-- evicting policy took the record of a deleted namespace (its 'g' is all that
-- is left of it) before the sweeper reclaimed the old sessions, they must not
-- come back when the namespace is made again. A deleted record keeps its 'g',
-- which namespace_delete moves on by one, so it never catches up with the clock.
local key = KEYS[1]
local fresh = redis.call('HSETNX', key, 'c', ARGV[1])
redis.call('HSETNX', key, 'g', ARGV[3])
if ARGV[2] ~= '' then redis.call('HSET', key, 't', ARGV[2]) end
local v = redis.call('HMGET', key, 'c', 't', 'g')
return {tonumber(v[1]), tonumber(v[2] or '0'), tonumber(v[3]), fresh}
