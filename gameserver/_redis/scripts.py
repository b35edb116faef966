"""The Lua scripts: each runs atomically in Redis, on one room's keys only.

A room's scripts take its keys in ``keys.ROOM_PARTS`` order:
``meta state entries chat timers present groups seen lease log``.

The lease holds ``"<process id>:<token>"``: the token grows by one at every
claim (``meta.fence``), so a process that lost the room and claims it again
holds a different lease than before. ``meta.version`` counts the commits:
a commit names the version it follows, so that once one commit of a room
fails, none sent after it can apply.
"""

from __future__ import annotations

from gameserver._redis.connection import Script

#: Take the room if nobody holds it (or this process does), and load it all.
#: ARGV: process id, lease milliseconds.
#: Returns {0} (no such room), {1, holder} (held by another process), or
#: {2, token, meta, state, entries, chat, timers, present, groups, seen, log}.
CLAIM = Script("""
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local holder = redis.call('GET', KEYS[9])
if holder and string.match(holder, '^([^:]*)') ~= ARGV[1] then return {1, holder} end
local token = redis.call('HINCRBY', KEYS[1], 'fence', 1)
redis.call('SET', KEYS[9], ARGV[1] .. ':' .. token, 'PX', ARGV[2])
return {2, token,
  redis.call('HGETALL', KEYS[1]),
  redis.call('GET', KEYS[2]),
  redis.call('HGETALL', KEYS[3]),
  redis.call('LRANGE', KEYS[4], 0, -1),
  redis.call('HGETALL', KEYS[5]),
  redis.call('HGETALL', KEYS[6]),
  redis.call('HGETALL', KEYS[7]),
  redis.call('HGETALL', KEYS[8]),
  redis.call('LRANGE', KEYS[10], 0, -1)}
""")

#: Save what some turns changed, fenced by the lease and the version, then
#: publish their messages to the processes of their recipients.
#: ARGV: lease, version this follows, lease milliseconds, index of the last
#: op, the ops (see ``RedisCommitter``), then channel, message pairs.
#: Returns 1, -1 (the lease is not this holder's) or -2 (another version).
COMMIT = Script("""
if redis.call('GET', KEYS[9]) ~= ARGV[1] then return -1 end
local version = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if version ~= tonumber(ARGV[2]) then return -2 end
local last = tonumber(ARGV[4])
local i = 5
local dropped = false
while i <= last do
  local op = ARGV[i]
  if op == 'S' then redis.call('SET', KEYS[2], ARGV[i + 1]); i = i + 2
  elseif op == 'E' then redis.call('HSET', KEYS[3], ARGV[i + 1], ARGV[i + 2]); i = i + 3
  elseif op == 'e' then redis.call('HDEL', KEYS[3], ARGV[i + 1]); i = i + 2
  elseif op == 'C' then redis.call('RPUSH', KEYS[4], ARGV[i + 1]); i = i + 2
  elseif op == 'K' then redis.call('LTRIM', KEYS[4], -tonumber(ARGV[i + 1]), -1); i = i + 2
  elseif op == 'R' then
    redis.call('HSET', KEYS[1], 'players', ARGV[i + 1], 'state', ARGV[i + 2],
      'spectators', ARGV[i + 3], 'reserved', ARGV[i + 4]); i = i + 5
  elseif op == 'X' then redis.call('DEL', KEYS[5]); i = i + 1
  elseif op == 'T' then redis.call('HSET', KEYS[5], ARGV[i + 1], ARGV[i + 2]); i = i + 3
  elseif op == 't' then redis.call('HDEL', KEYS[5], ARGV[i + 1]); i = i + 2
  elseif op == 'P' then redis.call('HSET', KEYS[6], ARGV[i + 1], ARGV[i + 2]); i = i + 3
  elseif op == 'p' then redis.call('HDEL', KEYS[6], ARGV[i + 1]); i = i + 2
  elseif op == 'G' then redis.call('HSET', KEYS[7], ARGV[i + 1], ARGV[i + 2]); i = i + 3
  elseif op == 'g' then redis.call('HDEL', KEYS[7], ARGV[i + 1]); i = i + 2
  elseif op == 'Q' then redis.call('HSET', KEYS[8], ARGV[i + 1], ARGV[i + 2]); i = i + 3
  elseif op == 'L' then
    -- n entries (at most 5000: unpack's limit is near 8000), kept to the
    -- last size; the room's seq; the log gone window ms after its last.
    local n = tonumber(ARGV[i + 1])
    redis.call('RPUSH', KEYS[10], unpack(ARGV, i + 5, i + 4 + n))
    redis.call('LTRIM', KEYS[10], -tonumber(ARGV[i + 2]), -1)
    redis.call('HSET', KEYS[1], 'seq', ARGV[i + 3])
    redis.call('PEXPIRE', KEYS[10], ARGV[i + 4]); i = i + 5 + n
  elseif op == 'D' then
    redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10])
    dropped = true; i = i + 1
  else return redis.error_reply('unknown commit op ' .. tostring(op)) end
end
if not dropped then
  redis.call('HSET', KEYS[1], 'version', version + 1)
  redis.call('PEXPIRE', KEYS[9], ARGV[3])
end
for j = last + 1, #ARGV, 2 do redis.call('PUBLISH', ARGV[j], ARGV[j + 1]) end
return 1
""")

#: Hand out guests whose time is over, each to one caller: its end moves to
#: the lease's, after which another may have it (its remover failed).
#: KEYS: the guests. ARGV: now, at most how many, the lease's end.
#: Returns their ids.
EXPIRED_GUESTS = Script("""
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, id in ipairs(due) do redis.call('ZADD', KEYS[1], ARGV[3], id) end
return due
""")

#: Make a guest a full account, in one step, unless it was claimed or
#: removed meanwhile. KEYS: the guests, the user's record. ARGV: user id,
#: the record as read, the new record. Returns 1, 0 if the user is not a
#: guest any more, or 2 if the record changed since it was read (read again).
CLAIM_GUEST = Script("""
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
if redis.call('GET', KEYS[2]) ~= ARGV[2] then return 2 end
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[3])
return 1
""")

#: Replace a value only if it is still the one read (a compare-and-set).
#: KEYS: the key. ARGV: the value read, the new one. Returns 1, or 0.
SWAP = Script("""
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
""")

#: What the admin API shows of a room, read in one step from its keys
#: (``meta state entries chat present lease log``). ARGV: the time since
#: which its messages are counted, whether to read its data too.
#: Returns {meta, lease or false, present, messages since then} and, with
#: the data, {state, entries, chat} after them.
ROOM_VIEW = Script("""
local meta = redis.call('HGETALL', KEYS[1])
if #meta == 0 then return {} end
local since = tonumber(ARGV[1])
local count = 0
local stop = -1
local going = true
while going do
  local chunk = redis.call('LRANGE', KEYS[7], stop - 99, stop)
  if #chunk == 0 then break end
  for j = #chunk, 1, -1 do
    local at = tonumber(string.match(chunk[j], '^%S+ (%S+)'))
    if not at or at < since then going = false; break end
    count = count + 1
  end
  if #chunk < 100 then break end
  stop = stop - 100
end
local reply = {meta, redis.call('GET', KEYS[6]), redis.call('HGETALL', KEYS[5]), count}
if ARGV[2] == '1' then
  reply[5] = redis.call('GET', KEYS[2])
  reply[6] = redis.call('HGETALL', KEYS[3])
  reply[7] = redis.call('LRANGE', KEYS[4], 0, -1)
end
return reply
""")

#: Extend the lease if this holder still has it. ARGV: lease, milliseconds.
RENEW = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
""")

#: Give the room back, if this holder still has it. ARGV: lease.
RELEASE = Script("""
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
""")

#: Say this process is alive. KEYS: the process set, this process's alive
#: key, its buried mark, its set of addresses (the limits'). ARGV: process
#: id, milliseconds, the address set's expiry in milliseconds (kept while
#: the process lives). Returns more than 0 if the process was not in the
#: set or was marked buried: new, or taken for dead by another process
#: (which lets its users go).
HEARTBEAT = Script("""
local buried = redis.call('DEL', KEYS[3])
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], 1, 'PX', ARGV[2])
redis.call('PEXPIRE', KEYS[4], ARGV[3])
return added + buried
""")

# The abuse limits (``RedisLimiter``). Each touches one key, but for the
# socket counts' (an address's hash and the process's set of addresses, in
# two hash slots: see "Past one Redis"); times are the caller's (its
# clock), in seconds, so that tests can use a fake one.
# Fractions go back as strings: Redis would cut a Lua number to an integer.

#: A token bucket. KEYS: the bucket (hash: t tokens, s stamp). ARGV: now,
#: rate, burst. Returns "0" (spent one) or the seconds until a token.
#: The bucket expires once it would be full again.
TAKE = Script("""
local now, rate, burst = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local b = redis.call('HMGET', KEYS[1], 't', 's')
local tokens, stamp = tonumber(b[1]), tonumber(b[2])
if not tokens or not stamp then tokens, stamp = burst, now end
if now > stamp then
  tokens = math.min(burst, tokens + (now - stamp) * rate); stamp = now
end
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = (1 - tokens) / rate end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens),
  's', string.format('%.17g', stamp))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil((burst - tokens) / rate * 1000)))
return string.format('%.17g', wait)
""")

#: Count a password guess unless its key is backing off. KEYS: the record
#: (hash: n attempts, u waiting until, f forgotten at). ARGV: now, free
#: attempts, first wait, longest wait, seconds to forget. Returns "0"
#: (counted) or the seconds left to wait. The record is forgotten by the
#: caller's clock (``f``) and expires by Redis's at about the same time.
ATTEMPT = Script("""
local now, free = tonumber(ARGV[1]), tonumber(ARGV[2])
local r = redis.call('HMGET', KEYS[1], 'n', 'u', 'f')
local n, u = tonumber(r[1]) or 0, tonumber(r[2]) or 0
if now >= (tonumber(r[3]) or 0) then n, u = 0, 0 end
if u > now then return string.format('%.17g', u - now) end
n = n + 1
if n >= free then
  u = now + math.min(tonumber(ARGV[3]) * 2 ^ (n - free), tonumber(ARGV[4]))
end
local forget = math.max(u, now) - now + tonumber(ARGV[5])
redis.call('HSET', KEYS[1], 'n', n, 'u', string.format('%.17g', u),
  'f', string.format('%.17g', now + forget))
redis.call('PEXPIRE', KEYS[1], math.max(1, math.ceil(forget * 1000)))
return '0'
""")

#: Forget a record of attempts (ARGV "reset") or its last attempt only.
FORGIVE = Script("""
if ARGV[1] == 'reset' then return redis.call('DEL', KEYS[1]) end
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
if n > 0 then redis.call('HSET', KEYS[1], 'n', n - 1) end
return n
""")

#: Count a new socket of an address, summed over every process, and list
#: the address as this process's. KEYS: the address's hash, the process's
#: set of addresses. ARGV: process id, most open, most unvalidated, expiry
#: ms, the address. Returns 0 (counted), 1 (too many open) or 2 (too many
#: unvalidated). Both keys expire a day after the last socket they count
#: (the set also after the process's last heartbeat); a refusal gives the hash an expiry only if it has none (a refused client
#: that keeps trying does not keep a count alive).
OPEN_SOCKET = Script("""
local fields = redis.call('HGETALL', KEYS[1])
local open, unvalidated = 0, 0
for i = 1, #fields, 2 do
  if string.sub(fields[i], -2) == ':u' then
    unvalidated = unvalidated + tonumber(fields[i + 1])
  else open = open + tonumber(fields[i + 1]) end
end
local refused = 0
if open >= tonumber(ARGV[2]) then refused = 1
elseif unvalidated >= tonumber(ARGV[3]) then refused = 2 end
if refused > 0 then
  if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
  return refused
end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('HINCRBY', KEYS[1], ARGV[1] .. ':u', 1)
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 0
""")

#: Change this process's counts of an address's sockets; a count that
#: reaches 0 goes. KEYS: the address's hash, the process's set of
#: addresses. ARGV: process id, change of open, change of unvalidated, the
#: address to take out of the set (its last socket here closed) or "".
SOCKET_CHANGED = Script("""
local function change(field, by)
  if by == 0 then return end
  if redis.call('HINCRBY', KEYS[1], field, by) <= 0 then
    redis.call('HDEL', KEYS[1], field)
  end
end
change(ARGV[1], tonumber(ARGV[2]))
change(ARGV[1] .. ':u', tonumber(ARGV[3]))
if ARGV[4] ~= '' then redis.call('SREM', KEYS[2], ARGV[4]) end
return 1
""")

#: Write this process's counts of an address's sockets as they are (a
#: repair, after a change that may have been lost). KEYS, ARGV: as
#: ``OPEN_SOCKET``'s, with the open and unvalidated counts for the limits.
SET_SOCKETS = Script("""
local open, unvalidated = tonumber(ARGV[2]), tonumber(ARGV[3])
if open <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[1], ARGV[1] .. ':u')
  redis.call('SREM', KEYS[2], ARGV[5])
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], open)
if unvalidated > 0 then redis.call('HSET', KEYS[1], ARGV[1] .. ':u', unvalidated)
else redis.call('HDEL', KEYS[1], ARGV[1] .. ':u') end
if redis.call('PTTL', KEYS[1]) == -1 then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
redis.call('SADD', KEYS[2], ARGV[5])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return 1
""")
