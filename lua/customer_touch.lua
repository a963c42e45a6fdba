-- Puts sessions in one customer's index (service/store/customers.py), scored
-- by this node's clock: every score of one index comes from one clock, the
-- node that holds it. A score never goes back: an entry keeps the larger of
-- its score and now. Run before each write that ties a session to the
-- customer, so an entry is there before the tie is.
-- KEYS: 1 the customer's index (zset; member: namespace .. "\0" .. session id)
-- ARGV: 1 verify above: when the index then holds more than this many entries,
--         answer some of its oldest (0 = never), 2 how many of them at most,
--       3 guard (ms): only entries older than this are answered (the only ones
--         that customer_drop.lua may remove),
--       4.. the members to put in
-- Returns {member, score, member, score, ...}: the oldest entries to verify (often none).
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
for n = 4, #ARGV do
  local old = redis.call('ZSCORE', key, ARGV[n])
  if not old or tonumber(old) < now then redis.call('ZADD', key, now, ARGV[n]) end
end
local above = tonumber(ARGV[1])
if above > 0 and redis.call('ZCARD', key) > above then
  return redis.call('ZRANGEBYSCORE', key, '-inf', now - tonumber(ARGV[3]), 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[2]))
end
return {}
