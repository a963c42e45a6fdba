-- One request against an API key's rate limit (GCRA, the generic cell rate
-- algorithm): the key holds the theoretical arrival time (TAT, in µs of the
-- Redis server's clock, so every service instance agrees on "now") at which
-- the key's budget is whole again. A request takes one interval of it; it is
-- admitted while the TAT stays within one burst of now, and refused (nothing
-- written) otherwise. The key expires as soon as the budget is whole again,
-- so an idle key holds nothing.
--
-- KEYS: 1 the API key's limiter (a string)
-- ARGV: 1 the interval one request takes (µs), 2 the burst (µs: requests x interval)
-- Returns {1, 0} when admitted, {0, µs until one request would be} when refused.
local key = KEYS[1]
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local tat = tonumber(redis.call('GET', key) or 0)
if tat < now then tat = now end
local next_tat = tat + interval
if next_tat - now > burst then
  return {0, next_tat - burst - now}
end
redis.call('SET', key, string.format('%.0f', next_tat), 'PX', math.ceil((next_tat - now) / 1000))
return {1, 0}
