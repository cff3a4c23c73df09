"""Redis Lua scripts: every lease change and every side effect is one atomic, fenced call.

Leases live in one hash, ``field = "<stream_id>|<group>"`` and ``value =
"<owner>|<epoch>|<expires_ms>"``, judged against Redis' own clock (``TIME``), so member
clocks never matter. A fencing *epoch* is issued when a unit changes owner: the larger of
a counter and the server's microsecond clock, so epochs stay monotonic even after a
restart that lost the counter. ``last`` remembers the latest owner/epoch of each unit
(without expiry), so an owner re-claiming its own unit after an outage keeps its epoch:
no owner change, no new epoch, and its queued writes still pass the fence.
"""

from __future__ import annotations

_PRELUDE = """
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function parse(v)
  local owner, epoch, exp = string.match(v, '^(.*)|(%d+)|(%d+)$')
  return owner, tonumber(epoch), tonumber(exp)
end
-- The event log's birth mark (KEYS[b]): created with the log. A member that knew another
-- mark (ARGV[e] not empty and different) has seen the log lost: open the recovery window,
-- during which receivers get nothing while members re-stage the events they kept.
local function born_mark(kb, kr, expected, window_ms)
  local born = redis.call('GET', kb)
  if not born then
    local t = redis.call('TIME')
    born = t[1] .. string.format('%06d', tonumber(t[2]))
    redis.call('SET', kb, born)
  end
  if expected ~= '' and expected ~= born then
    redis.call('SET', kr, '1', 'NX', 'PX', window_ms)
  end
  return born
end
-- The fence: the lease KEYS[1][ARGV[2]] is held by ARGV[1] with epoch ARGV[3].
local function fenced()
  local cur = redis.call('HGET', KEYS[1], ARGV[2])
  if not cur then return false end
  local owner, e = parse(cur)
  return owner == ARGV[1] and e == tonumber(ARGV[3])
end
"""

# KEYS: leases, last, epoch counter, reservations. ARGV: me, ttl_ms, unit...
# Returns, per unit, the epoch now held by me, or -1 if another member holds it or it is
# reserved for another member (a live owner handed it to that successor, see RELEASE).
CLAIM = (
    _PRELUDE
    + """
local now = now_ms()
local out = {}
for i = 3, #ARGV do
  local unit = ARGV[i]
  local cur = redis.call('HGET', KEYS[1], unit)
  local epoch = nil
  if cur then
    local owner, e, exp = parse(cur)
    if owner == ARGV[1] then epoch = e
    elseif exp > now then epoch = -1 end
  end
  if epoch == nil then
    local res = redis.call('HGET', KEYS[4], unit)
    if res then
      local who, untl = string.match(res, '^(.*)|(%d+)$')
      if who ~= ARGV[1] and tonumber(untl) > now then epoch = -1 end
    end
  end
  if epoch == nil then
    local last = redis.call('HGET', KEYS[2], unit)
    if last then
      local lowner, le = string.match(last, '^(.*)|(%d+)$')
      if lowner == ARGV[1] then epoch = tonumber(le) end
    end
    if epoch == nil then
      local t = redis.call('TIME')
      local floor = tonumber(t[1]) * 1000000 + tonumber(t[2])
      local n = redis.call('INCR', KEYS[3])
      epoch = math.max(n, floor)
      redis.call('SET', KEYS[3], string.format('%d', epoch))
    end
  end
  if epoch ~= -1 then
    local e = string.format('%d', epoch)
    local exp = string.format('%d', now + tonumber(ARGV[2]))
    redis.call('HSET', KEYS[1], unit, ARGV[1] .. '|' .. e .. '|' .. exp)
    redis.call('HSET', KEYS[2], unit, ARGV[1] .. '|' .. e)
    redis.call('HDEL', KEYS[4], unit)
    out[#out + 1] = e
  else
    out[#out + 1] = '-1'
  end
end
return out
"""
)

# KEYS: leases. ARGV: me, ttl_ms, unit1, epoch1, unit2, epoch2, ...
# Extends my leases that still carry my epoch (even if they expired meanwhile: nobody
# took them, e.g. while Redis itself was paused). Per unit: 1 renewed, 0 missing (lost
# in a restart: claim again), -1 taken by another owner or epoch (stop the unit).
RENEW = (
    _PRELUDE
    + """
local now = now_ms()
local out = {}
for i = 3, #ARGV, 2 do
  local unit, epoch = ARGV[i], tonumber(ARGV[i + 1])
  local cur = redis.call('HGET', KEYS[1], unit)
  if not cur then
    out[#out + 1] = 0
  else
    local owner, e = parse(cur)
    if owner == ARGV[1] and e == epoch then
      local exp = string.format('%d', now + tonumber(ARGV[2]))
      redis.call('HSET', KEYS[1], unit, ARGV[1] .. '|' .. ARGV[i + 1] .. '|' .. exp)
      out[#out + 1] = 1
    else
      out[#out + 1] = -1
    end
  end
end
return out
"""
)

# KEYS: leases, reservations. ARGV: me, reserve_ms, then per unit: unit, epoch, successor
# ('' for none). Drops each of my leases (fenced); per unit 1 if released. With a
# successor, only that member may claim the unit for reserve_ms: the giver's choice
# stands, so members acting on snapshots a tick apart cannot race the successor for it
# (an old member taking a handed-over unit on a scale-out). If the successor never
# claims, anyone may once the reservation ends. One call for all the units a member hands
# over at once: a successor never sees part of a stream released (it would start that
# part cold, its warmed-up runner being for the whole).
RELEASE = (
    _PRELUDE
    + """
local out = {}
for i = 3, #ARGV, 3 do
  local unit, heir = ARGV[i], ARGV[i + 2]
  local cur = redis.call('HGET', KEYS[1], unit)
  local done = 0
  if cur then
    local owner, e = parse(cur)
    if owner == ARGV[1] and e == tonumber(ARGV[i + 1]) then
      redis.call('HDEL', KEYS[1], unit)
      if heir ~= '' then
        local until_ms = string.format('%d', now_ms() + tonumber(ARGV[2]))
        redis.call('HSET', KEYS[2], unit, heir .. '|' .. until_ms)
      end
      done = 1
    end
  end
  out[#out + 1] = done
end
return out
"""
)

# KEYS: leases, defects hash, all-defects zset, stream zset, open set, event log, event seq,
#       log birth mark, log recovery window.
# ARGV: me, unit, epoch, defect_id, defect_json, score, is_open, channel, event_json,
#       max_keep, log_max, restore ('1': write the record only, it was already announced),
#       the birth mark the member last saw, recovery window (ms)
# A defect write (open or close) accepted only from the unit's current owner and epoch.
# The same call appends the event to the log and publishes it: what users see (SSE from
# the channel, webhooks from the log) exists only if the fenced write happened. Returns
# {log entry id (the event's stable id), birth mark}; 1 for a restore; 0 when the fence
# refused the write; -1 when the unit has no lease at all (Redis restarted empty and the
# owner has not claimed it again yet: the caller queues the write until it has).
WRITE_DEFECT = (
    _PRELUDE
    + """
if not fenced() then
  if redis.call('HEXISTS', KEYS[1], ARGV[2]) == 0 then return -1 end
  return 0
end
-- One open and one close per defect: an open of an open defect or a close of a closed
-- one (a write retried after a lost reply, two runners racing at a handoff) was
-- committed before; acknowledged, with no second event.
if ARGV[12] ~= '1' then
  local was_open = redis.call('SISMEMBER', KEYS[5], ARGV[4]) == 1
  if ARGV[7] == '1' and was_open then return 2 end
  if ARGV[7] == '0' and not was_open and redis.call('HEXISTS', KEYS[2], ARGV[4]) == 1 then
    return 2
  end
end
redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[6], ARGV[4])
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[4])
if ARGV[7] == '1' then
  redis.call('SADD', KEYS[5], ARGV[4])
else
  redis.call('SREM', KEYS[5], ARGV[4])
end
local n = redis.call('ZCARD', KEYS[3])
local keep = tonumber(ARGV[10])
if n > keep then
  local old = redis.call('ZRANGE', KEYS[3], 0, n - keep - 1)
  for _, id in ipairs(old) do
    if redis.call('SISMEMBER', KEYS[5], id) == 0 then
      redis.call('HDEL', KEYS[2], id)
      redis.call('ZREM', KEYS[3], id)
    end
  end
end
-- The stream's index is bounded too (open defects stay findable through KEYS[5]).
local sn = redis.call('ZCARD', KEYS[4])
if sn > keep then redis.call('ZREMRANGEBYRANK', KEYS[4], 0, sn - keep - 1) end
if ARGV[12] == '1' then return 1 end  -- a record restored after Redis lost it: no event
local born = born_mark(KEYS[8], KEYS[9], ARGV[13], ARGV[14])
local seq = redis.call('INCR', KEYS[7])
local id = redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[11], '*', 'event', ARGV[9], 'seq', seq)
redis.call('PUBLISH', ARGV[8], ARGV[9])
return {id, born}
"""
)

# KEYS: leases, defects hash, all-defects zset, stream zset, open set, last owners.
# ARGV: me, unit, epoch. Deletes a removed stream's defects (and the unit's last-owner
# entry, so nothing of a deleted stream stays behind), fenced like a write.
PURGE_STREAM = (
    _PRELUDE
    + """
if not fenced() then return 0 end
local ids = redis.call('ZRANGE', KEYS[4], 0, -1)
for _, id in ipairs(ids) do
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  redis.call('SREM', KEYS[5], id)
end
redis.call('DEL', KEYS[4])
redis.call('HDEL', KEYS[1], ARGV[2])
if KEYS[6] then redis.call('HDEL', KEYS[6], ARGV[2]) end
return 1
"""
)

# KEYS: log birth mark, log recovery window. ARGV: the mark the member last saw, window ms.
# Returns the log's mark (creating it if the log is new), opening the recovery window if
# the caller knew another.
LOG_BORN = (
    _PRELUDE
    + """
return born_mark(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
"""
)

# KEYS: the receiver's holder, its recovered zset. ARGV: me, score. A recovered event
# delivered (or given up): drop it, only while ``me`` holds the receiver.
SETTLE_RECOVERED = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[2], ARGV[2], ARGV[2])
return 1
"""
