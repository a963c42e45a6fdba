-- include: lib
-- Lists the live session ids of one bucket in id order, dropping expired ones
-- from the indexes on the way.
-- KEYS: 1 bucket id index, 2 bucket expiry index, 3 bucket session-TTL index
-- ARGV: 1 now (ms), 2 start (ZRANGEBYLEX bound: '-' or '(' .. last id seen),
--       3 most ids to return (0 = none, just the count), 4 ids to skip first,
--       5 (optional) stop (ZRANGEBYLEX bound; default '+': to the end)
-- Returns {live ids in the bucket, id...}
local idx, exp_index, ttl_index = KEYS[1], KEYS[2], KEYS[3]
local now = tonumber(ARGV[1])
prune_index(idx, exp_index, ttl_index, now, 1000)
local live = redis.call('ZCARD', idx) - redis.call('ZCOUNT', exp_index, '-inf', now)
local out = {live}
local want = tonumber(ARGV[3])
if want > 0 then
  for _, id in ipairs(redis.call('ZRANGEBYLEX', idx, ARGV[2], ARGV[5] or '+', 'LIMIT', tonumber(ARGV[4]), want + 64)) do
    local at = redis.call('ZSCORE', exp_index, id)
    if not at or tonumber(at) > now then
      out[#out + 1] = id
      if #out > want then break end
    end
  end
end
return out
