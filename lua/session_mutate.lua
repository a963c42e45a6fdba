-- include: lib
-- Applies a list of property changes to one session, atomically: version
-- check, upsert, merge, increment, TTL stamping, size limits, expiry and the
-- change event all happen here or not at all.
--
-- KEYS: 1 session hash, 2 bucket id index (zset), 3 bucket expiry index (zset),
--       4 bucket session-TTL index (hash), 5 change-event channel
-- ARGV: 1 now (ms), 2 session id, 3 expected version ('' = any),
--       4 existence: 'any' | 'must' (else 'missing') | 'none' (else 'exists'),
--       5 TTL (ms) stamped on written properties, 0 = none; a session TTL
--         (LivePerson's) wins unless flag 'x' says this one was asked for,
--       6 idle TTL (ms) of the session: '' keep, '0' clear, N set,
--       7 most characters stored (0 = no limit), 8 most properties (0 = no limit),
--       9 flags: 'd' = delete the session when no property and no TTL is left,
--                'p' = publish with SPUBLISH (cluster) instead of PUBLISH,
--                'x' = the TTL in ARGV[5] was asked for explicitly,
--                'r' = answer 'ok' with the session as it is now (HGETALL) too,
--                'l' = a session this write creates was made through LivePerson (metadata o),
--       10 retention (ms): the session expires at the latest this long after its last write (0 = none),
--       11 the session's customer (metadata u): '' keep it, '-' untie the session,
--          '=' .. customer id tie it to that customer (a changed tie is a change:
--          a new version and an event, with no property named in it),
--       12.. the changes, three arguments each: op, field, value
--         set f json | del f - | clr - - | mrg f json (RFC 7396 merge patch)
--         sin f {"k":v,...} (set keys of an object) | din f "k" (remove a key)
--         inc f number
-- Returns {status, version, created (0|1), extra}; status 'ok', 'missing',
-- 'exists', 'version', 'toolarge', 'toomany' or 'nan'; extra is the new value
-- of the last 'inc'. With flag 'r', an 'ok' answer has a fifth element: the
-- session hash after the change (field, value, ...; empty if it is gone).
local key, idx, exp_index, ttl_index, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local now = tonumber(ARGV[1])
local sid = ARGV[2]

local m = meta_load(key)
local created = 0
if m then
  if ARGV[4] == 'none' then return {'exists', m.v, 0, ''} end
  if ARGV[3] ~= '' and tonumber(ARGV[3]) ~= m.v then return {'version', m.v, 0, ''} end
else
  if ARGV[4] == 'must' then return {'missing', 0, 0, ''} end
  m = meta_new(now)
  created = 1
end
local pruned = #prune(key, m, now)
local count = 0
if created == 0 then count = redis.call('HLEN', key) - 1 end
local count_before, flags = count, ARGV[9]

-- The tie asked for (false = none) and whether it differs from the stored one;
-- applied only in step 3, with the rest of the write.
local tie, tie_changed = m.u, false
if ARGV[11] ~= '' then
  if ARGV[11] == '-' then tie = false else tie = string.sub(ARGV[11], 2) end
  tie_changed = tie ~= m.u
end

local function answer(status, version, made, extra)
  if status == 'ok' and string.find(flags, 'r', 1, true) then
    return {status, version, made, extra, redis.call('HGETALL', key)}
  end
  return {status, version, made, extra}
end

local function give_up(status, extra)
  if pruned > 0 then meta_store(key, m) end
  return answer(status, m.v, 0, extra or '')
end

-- 1. Work out every new value (false = delete), reading only what is needed.
local cur, new, order = {}, {}, {}
local function current(field)
  local v = cur[field]
  if v == nil then
    v = redis.call('HGET', key, field) or false
    cur[field] = v
  end
  return v
end
local function pending_json(field)
  local v = new[field]
  if v == nil then v = current(field) end
  if v == false then return nil end
  return value_json(v)
end
local function put(field, json)
  if new[field] == nil then order[#order + 1] = field end
  new[field] = json
end
local function object_of(field)
  local base = pending_json(field)
  local node = base and json_parse(base)
  if node == nil or node.kind ~= 'o' then node = {kind = 'o', keys = {}, vals = {}} end
  return node, base ~= nil
end

local extra = ''
for n = 12, #ARGV, 3 do
  local op, field, value = ARGV[n], ARGV[n + 1], ARGV[n + 2]
  if op == 'set' then
    put(field, value)
  elseif op == 'del' then
    put(field, false)
  elseif op == 'clr' then
    local all = redis.call('HGETALL', key)
    for k = 1, #all, 2 do
      if all[k] ~= ':' then
        cur[all[k]] = all[k + 1]
        put(all[k], false)
      end
    end
    for _, f in ipairs(order) do new[f] = false end
  elseif op == 'mrg' then
    local patch = json_parse(value)
    if patch.kind ~= 'o' then
      put(field, value)
    else
      local base = pending_json(field)
      put(field, json_encode(json_merge(base and json_parse(base), patch)))
    end
  elseif op == 'sin' then
    local node = object_of(field)
    local patch = json_parse(value)
    for _, k in ipairs(patch.keys) do
      if node.vals[k] == nil then node.keys[#node.keys + 1] = k end
      node.vals[k] = patch.vals[k]
    end
    put(field, json_encode(node))
  elseif op == 'din' then
    local node, existed = object_of(field)
    if existed and node.vals[value] ~= nil then
      node.vals[value] = nil
      put(field, json_encode(node))
    end
  elseif op == 'inc' then
    local base = tonumber(pending_json(field) or '0')
    if base == nil then return give_up('nan') end
    local sum = base + tonumber(value)
    if sum ~= sum or sum == math.huge or sum == -math.huge then return give_up('nan') end
    extra = number_text(sum)
    put(field, extra)
  end
end

-- 2. Check the limits on what would be stored, before writing anything.
local z, p, changes = m.z, m.p, 0
local stamp = tonumber(ARGV[5])
if m.t > 0 and not string.find(flags, 'x', 1, true) then stamp = m.t * 1000 end
local changed, deleted = {}, {}
for _, field in ipairs(order) do
  local old, json = current(field), new[field]
  local name = field_name(field)
  if old then
    z = z - charlen(name) - charlen(value_json(old))
    if not value_expiry(old) then p = p - 1 end
    count = count - 1
  end
  if json then
    z = z + charlen(name) + charlen(json)
    if stamp == 0 then p = p + 1 end
    count = count + 1
    changed[#changed + 1] = json_string(name)
    changes = changes + 1
  elseif old then
    deleted[#deleted + 1] = json_string(name)
    changes = changes + 1
  end
end
local max_chars, max_props = tonumber(ARGV[7]), tonumber(ARGV[8])
if max_chars > 0 and z > max_chars and z > m.z then return give_up('toolarge') end
if max_props > 0 and count > max_props and count > count_before then return give_up('toomany') end
if changes == 0 and created == 0 and ARGV[6] == '' and not tie_changed then return give_up('ok', extra) end

-- 3. Write.
local version_before = m.v
if string.find(flags, 'd', 1, true) and count == 0 and m.t == 0 then
  if created == 1 then return answer('ok', 0, 0, extra) end
  redis.call('DEL', key)
  redis.call('ZREM', idx, sid)
  redis.call('ZREM', exp_index, sid)
  m.v = m.v + 1
else
  local expiry = 0
  if stamp > 0 then expiry = now + stamp end
  for _, field in ipairs(order) do
    local json = new[field]
    if json then
      if expiry > 0 then
        redis.call('HSET', key, field, '@' .. string.format('%013d', expiry) .. json)
        if m.e == 0 or expiry < m.e then m.e = expiry end
        if expiry > m.x then m.x = expiry end
      else
        redis.call('HSET', key, field, json)
      end
    elseif current(field) then
      redis.call('HDEL', key, field)
    end
  end
  m.z, m.p, m.u = z, p, tie
  if created == 1 and string.find(flags, 'l', 1, true) then m.o = 'l' end
  if changes > 0 or created == 1 or tie_changed then
    m.v = m.v + 1
    m.m = now
  end
  if ARGV[6] ~= '' then m.i = tonumber(ARGV[6]) end
  set_deadline(m, now, tonumber(ARGV[10]))
  meta_store(key, m)
  apply_expiry(key, exp_index, sid, m, count)
  if created == 1 then redis.call('ZADD', idx, 0, sid) end
end
prune_index(idx, exp_index, ttl_index, now, 16)

-- The change event, for a write that made a new version (one that only
-- moved the idle expiry changed nothing a subscriber can see).
if m.v ~= version_before then publish_change(channel, flags, m.v, changed, deleted) end
return answer('ok', m.v, created, extra)
