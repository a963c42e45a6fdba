-- Shared helpers, prepended by service/store/scripts.py to every script that
-- starts with the line "-- include: lib". Nothing here touches a key by itself:
-- every key is passed to the calling script in KEYS.
--
-- A session is one hash. Its metadata is one field named ":" holding ten
-- comma-separated numbers (see META below), then, when there is one, a tail:
-- ",o" or ",o,u" (see meta_load); every other field is a property.
-- A property whose name starts with ":" is stored with one more ":" in front,
-- so no property can take the metadata field's name.
--
-- A property's value is its compact JSON text. A value that expires is stored
-- as "@" .. 13-digit expiry time in ms .. JSON text ("@" never starts JSON).

local META = ':'
local META_NAMES = {'v', 'c', 'm', 'p', 'z', 'e', 'x', 't', 'i', 'a'}
-- v version, c created ms, m modified ms, p properties without expiry,
-- z characters stored (names + values), e earliest and x latest property
-- expiry ms, t TTL (s) stamped on written properties (LivePerson session TTL),
-- i idle TTL ms, a expiry ms of the whole session (idle TTL and retention;
-- see set_deadline).
-- After the numbers, two texts that are not numbers:
-- o the face that created the session, one letter ('l' = LivePerson v1 or
--   v2; '' = another, or not recorded),
-- u the customer the session is tied to (false = none); it is the rest of
--   the field after the comma that ends o, so it may hold commas itself.
-- A session with neither has no tail (the ten numbers alone, as ever).
-- service/store/core.py (_session) parses the same layout.

local function meta_load(key)
  local raw = redis.call('HGET', key, META)
  if not raw then return nil end
  local m, at, more = {o = '', u = false}, 1, true
  for _, name in ipairs(META_NAMES) do
    local comma = more and string.find(raw, ',', at, true)
    m[name] = tonumber(string.sub(raw, at, comma and comma - 1 or #raw)) or 0
    if comma then at = comma + 1 else at, more = #raw + 1, false end
  end
  if more then -- the tail, by position: o up to the next comma, u the rest
    local comma = string.find(raw, ',', at, true)
    if comma then
      m.o = string.sub(raw, at, comma - 1)
      if comma < #raw then m.u = string.sub(raw, comma + 1) end
    else
      m.o = string.sub(raw, at)
    end
  end
  return m
end

local function meta_new(now)
  return {v = 0, c = now, m = now, p = 0, z = 0, e = 0, x = 0, t = 0, i = 0, a = 0, o = '', u = false}
end

local function meta_store(key, m)
  local out = {}
  for n, name in ipairs(META_NAMES) do
    local value = m[name]
    if value == 0 and n > 3 then out[n] = '' else out[n] = string.format('%d', value) end
  end
  local text = table.concat(out, ',')
  if m.u then
    text = text .. ',' .. m.o .. ',' .. m.u
  elseif m.o ~= '' then
    text = text .. ',' .. m.o
  end
  redis.call('HSET', key, META, text)
end

local function charlen(s)
  -- UTF-8 characters: every byte that is not a continuation byte
  local _, cont = string.gsub(s, '[\128-\191]', '')
  return #s - cont
end

local function value_expiry(raw)
  if string.byte(raw, 1) == 64 then return tonumber(string.sub(raw, 2, 14)) end
  return nil
end

local function value_json(raw)
  if string.byte(raw, 1) == 64 then return string.sub(raw, 15) end
  return raw
end

local function field_name(field)
  -- the property name a field stands for (nil for the metadata field)
  if field == META then return nil end
  if string.sub(field, 1, 2) == '::' then return string.sub(field, 2) end
  return field
end

local JSON_ESCAPES = {['"'] = '\\"', ['\\'] = '\\\\', ['\b'] = '\\b', ['\f'] = '\\f',
                      ['\n'] = '\\n', ['\r'] = '\\r', ['\t'] = '\\t'}
local function json_string(s)
  return '"' .. string.gsub(s, '[%c"\\]', function(c)
    return JSON_ESCAPES[c] or string.format('\\u%04x', string.byte(c))
  end) .. '"'
end

-- Drops expired properties, keeping p, z, e and x right. Returns the names
-- dropped. Cheap unless some property has expired (e <= now).
local function prune(key, m, now)
  local dropped = {}
  if m.e == 0 or m.e > now then return dropped end
  local all = redis.call('HGETALL', key)
  local earliest, latest = 0, 0
  for n = 1, #all, 2 do
    local field, raw = all[n], all[n + 1]
    local name = field_name(field)
    local at = name and value_expiry(raw)
    if at then
      if at <= now then
        redis.call('HDEL', key, field)
        m.z = m.z - charlen(name) - charlen(raw) + 14
        dropped[#dropped + 1] = name
      else
        if earliest == 0 or at < earliest then earliest = at end
        if at > latest then latest = at end
      end
    end
  end
  m.e, m.x = earliest, latest
  return dropped
end

-- Sets m.a, when the whole session expires: its idle TTL from now (with
-- m.i), capped by the retention (ms after its last write, m.m; 0 = none).
local function set_deadline(m, now, retention)
  local at = 0
  if m.i > 0 then at = now + m.i end
  if retention > 0 and (at == 0 or m.m + retention < at) then at = m.m + retention end
  m.a = at
end

-- Sets the session key's expiry and its place in the bucket's expiry index:
-- m.a (see set_deadline), or, in a session without an idle TTL whose
-- properties all expire, the last of them to go if that comes first.
-- keys: session, bucket expiry zset. nprops: properties stored now.
local function apply_expiry(key, exp_index, member, m, nprops)
  local at = m.a
  if m.i == 0 and nprops > 0 and m.p == 0 and m.x > 0 and (at == 0 or m.x < at) then at = m.x end
  if at > 0 then
    redis.call('PEXPIREAT', key, at)
    redis.call('ZADD', exp_index, at, member)
  else
    redis.call('PERSIST', key)
    redis.call('ZREM', exp_index, member)
  end
end

-- Removes from a bucket's indexes the sessions whose expiry has passed.
local function prune_index(idx, exp_index, ttl_index, now, limit)
  local gone = redis.call('ZRANGEBYSCORE', exp_index, '-inf', now, 'LIMIT', 0, limit)
  if #gone > 0 then
    redis.call('ZREM', exp_index, unpack(gone))
    redis.call('ZREM', idx, unpack(gone))
    redis.call('HDEL', ttl_index, unpack(gone))
  end
end

-- Publishes a session's change event: {"version", "changed", "deleted"}
-- (changed and deleted: lists of JSON-encoded names), with SPUBLISH (a
-- cluster's sharded pub/sub) when flags has 'p', else PUBLISH.
local function publish_change(channel, flags, version, changed, deleted)
  local event = '{"version":' .. version .. ',"changed":[' .. table.concat(changed, ',') ..
                '],"deleted":[' .. table.concat(deleted, ',') .. ']}'
  if string.find(flags, 'p', 1, true) then
    redis.call('SPUBLISH', channel, event)
  else
    redis.call('PUBLISH', channel, event)
  end
end

----------------------------------------------------------------------------
-- A JSON tree that keeps every scalar as its original text, so values that a
-- merge does not change come out byte for byte as they went in (no float
-- rounding, no big-integer loss, "[]" stays "[]"). Input is compact JSON as
-- the service writes it (no insignificant white space).
--   object: {kind = 'o', keys = {raw key text ...}, vals = {raw key -> node}}
--   array:  {kind = 'a', items = {node ...}}
--   scalar: {kind = 's', text = 'raw text'}

local json_parse_at

local function json_skip_string(s, i)
  -- s:sub(i, i) == '"'; returns the index after the closing quote
  local j = i + 1
  while true do
    local k = string.find(s, '["\\]', j)
    if not k then error('bad json string') end
    if string.byte(s, k) == 92 then j = k + 2 else return k + 1 end
  end
end

json_parse_at = function(s, i)
  local c = string.byte(s, i)
  if c == 123 then -- {
    local node = {kind = 'o', keys = {}, vals = {}}
    i = i + 1
    if string.byte(s, i) == 125 then return node, i + 1 end
    while true do
      local after = json_skip_string(s, i)
      local k = string.sub(s, i, after - 1)
      local v
      v, i = json_parse_at(s, after + 1) -- skip ':'
      if node.vals[k] == nil then node.keys[#node.keys + 1] = k end
      node.vals[k] = v
      local d = string.byte(s, i)
      i = i + 1
      if d == 125 then return node, i end
    end
  elseif c == 91 then -- [
    local node = {kind = 'a', items = {}}
    i = i + 1
    if string.byte(s, i) == 93 then return node, i + 1 end
    while true do
      local v
      v, i = json_parse_at(s, i)
      node.items[#node.items + 1] = v
      local d = string.byte(s, i)
      i = i + 1
      if d == 93 then return node, i end
    end
  elseif c == 34 then -- "
    local after = json_skip_string(s, i)
    return {kind = 's', text = string.sub(s, i, after - 1)}, after
  else
    local _, last = string.find(s, '^[^,%]}]+', i)
    return {kind = 's', text = string.sub(s, i, last)}, last + 1
  end
end

local function json_parse(s)
  local node = json_parse_at(s, 1)
  return node
end

local function json_encode(node)
  if node.kind == 's' then return node.text end
  local parts = {}
  if node.kind == 'a' then
    for n, item in ipairs(node.items) do parts[n] = json_encode(item) end
    return '[' .. table.concat(parts, ',') .. ']'
  end
  for _, k in ipairs(node.keys) do
    local v = node.vals[k]
    if v ~= nil then parts[#parts + 1] = k .. ':' .. json_encode(v) end
  end
  return '{' .. table.concat(parts, ',') .. '}'
end

local function json_is_null(node)
  return node.kind == 's' and node.text == 'null'
end

-- RFC 7396 JSON merge patch of node patch onto node target (target may be nil).
local function json_merge(target, patch)
  if patch.kind ~= 'o' then return patch end
  if target == nil or target.kind ~= 'o' then target = {kind = 'o', keys = {}, vals = {}} end
  for _, k in ipairs(patch.keys) do
    local pv = patch.vals[k]
    if json_is_null(pv) then
      target.vals[k] = nil
    else
      if target.vals[k] == nil then target.keys[#target.keys + 1] = k end
      target.vals[k] = json_merge(target.vals[k], pv)
    end
  end
  return target
end

-- Shortest decimal text that reads back as the same double.
local function number_text(x)
  if x == math.floor(x) and math.abs(x) < 9007199254740992 then
    return string.format('%d', x)
  end
  for _, digits in ipairs({15, 16, 17}) do
    local s = string.format('%.' .. digits .. 'g', x)
    if tonumber(s) == x then return s end
  end
  return string.format('%.17g', x)
end
