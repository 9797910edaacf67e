"""The conversation store's server-side Lua scripts: append a turn, set feedback, delete a conversation."""

# One write of a turn in one atomic step. KEYS: messages, state, meta, turns, feedback, text, index,
# agents. ARGV: id, now, ttl, token, agent, has_state, state, turn, message, where, n, n messages,
# k, k field/value pairs, j, j field/increment pairs, title, text, expected state version, started.
# With a turn id, the message of that turn (stored when the customer sent it, at list index `where`
# then) is replaced by `message`, or appended when it is gone, and the n messages (its replies)
# follow it. Returns the length of the message list, 0 when the token was already applied (a
# retry), or -1, writing nothing, when the state's version is not the expected one (another turn
# stored the state since it was read: the caller merges again).
#
# The state is versioned (meta field `state_version`, +1 on every state write): a turn that read
# version v writes only if it is still v, so no turn writes over a state it never saw. The summary
# fields set (last intent, sentiment, priority, triage state, backend...) describe the latest turn
# by start time (`started`, the customer message's time; meta field `turn_started`): an older turn
# that ends late leaves them alone, except `escalated`, which only ever becomes 1.
APPEND_TURN = """
local sid, now, ttl, token, agent = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5]
local expected, started = ARGV[#ARGV - 1], ARGV[#ARGV]
if expected ~= '' and (redis.call('HGET', KEYS[3], 'state_version') or '0') ~= expected then return -1 end
if token ~= '' and redis.call('SADD', KEYS[4], token) == 0 then return 0 end
local n = tonumber(ARGV[11])
local placed = false
local function is_turn(raw) return raw and string.find(raw, ARGV[8], 1, true) and cjson.decode(raw)['turn'] == ARGV[8] end
if ARGV[8] ~= '' then
  local at = tonumber(ARGV[10])
  local length = redis.call('LLEN', KEYS[1])
  if not (at and at >= 0 and is_turn(redis.call('LINDEX', KEYS[1], at))) then
    -- Not where it was stored (the list was trimmed or rebuilt): look for it.
    at = nil
    local all = redis.call('LRANGE', KEYS[1], 0, -1)
    for p = #all, 1, -1 do
      if is_turn(all[p]) then at = p - 1 break end
    end
  end
  if not at then
    redis.call('RPUSH', KEYS[1], ARGV[9])
  else
    redis.call('LSET', KEYS[1], at, ARGV[9])
    if n > 0 and at < length - 1 then
      -- Other messages came after this one (a second tab): the replies go right after it, and the
      -- feedback of the messages they move down moves with them.
      local fields = redis.call('HGETALL', KEYS[5])
      if #fields > 0 then
        redis.call('DEL', KEYS[5])
        for f = 1, #fields, 2 do
          local index, rest = string.match(fields[f], '^(%d+)(:.*)$')
          if index and tonumber(index) > at then fields[f] = tostring(tonumber(index) + n) .. rest end
          redis.call('HSET', KEYS[5], fields[f], fields[f + 1])
        end
      end
      for m = n, 1, -1 do redis.call('LINSERT', KEYS[1], 'AFTER', ARGV[9], ARGV[11 + m]) end
      placed = true
    end
  end
end
local i = 11
if n > 0 and not placed then redis.call('RPUSH', KEYS[1], unpack(ARGV, i + 1, i + n)) end
i = i + n + 1
if ARGV[6] == '1' then
  redis.call('SET', KEYS[2], ARGV[7])
  redis.call('HINCRBY', KEYS[3], 'state_version', 1)
end
redis.call('HSETNX', KEYS[3], 'created', now)
redis.call('HSET', KEYS[3], 'updated', now)
local newer = true
if started ~= '' then
  local newest = tonumber(redis.call('HGET', KEYS[3], 'turn_started') or '')
  newer = (not newest) or tonumber(started) >= newest
  if newer then redis.call('HSET', KEYS[3], 'turn_started', started) end
end
local k = tonumber(ARGV[i])
for m = 0, k - 1 do
  local name = ARGV[i + 1 + 2 * m]
  if newer or name == 'escalated' then redis.call('HSET', KEYS[3], name, ARGV[i + 2 + 2 * m]) end
end
i = i + 2 * k + 1
local j = tonumber(ARGV[i])
for m = 0, j - 1 do redis.call('HINCRBY', KEYS[3], ARGV[i + 1 + 2 * m], ARGV[i + 2 + 2 * m]) end
i = i + 2 * j + 1
if ARGV[i] ~= '' then redis.call('HSETNX', KEYS[3], 'title', ARGV[i]) end
if ARGV[i + 1] ~= '' then redis.call('APPEND', KEYS[6], ARGV[i + 1]) end
redis.call('ZADD', KEYS[7], now, sid)
if agent ~= '' then
  redis.call('HSET', KEYS[3], 'agent', agent, 'agent:' .. agent, '1')
  redis.call('ZADD', 'chatbot:agent:' .. agent, now, sid)
  redis.call('ZADD', KEYS[8], now, agent)
end
if ttl > 0 then
  for p = 1, 6 do redis.call('EXPIRE', KEYS[p], ttl) end
  -- Index entries older than the TTL point at expired conversations.
  redis.call('ZREMRANGEBYSCORE', KEYS[7], '-inf', '(' .. tostring(tonumber(now) - ttl))
  if agent ~= '' then
    redis.call('ZREMRANGEBYSCORE', 'chatbot:agent:' .. agent, '-inf', '(' .. tostring(tonumber(now) - ttl))
  end
end
return redis.call('LLEN', KEYS[1])
"""

# Feedback on the reply at a list index. KEYS: messages, feedback, approved set.
# ARGV: id, index, the reply's time as the page read it ('' to take the index as it is), then
# field/value pairs to set ('' value deletes the field). When the message at the index has another
# time (an older turn's reply was inserted before it since the page read the list), the reply is
# found by its time, so the feedback never lands on another message.
SET_FEEDBACK = """
local at = tonumber(ARGV[2])
local raw = redis.call('LINDEX', KEYS[1], at)
local want = tonumber(ARGV[3])
if want and not (raw and cjson.decode(raw)['ts'] == want) then
  raw = nil
  local all = redis.call('LRANGE', KEYS[1], 0, -1)
  for p = #all, 1, -1 do
    local m = cjson.decode(all[p])
    if m['ts'] == want and m['role'] == 'assistant' then at, raw = p - 1, all[p] break end
  end
end
if not raw then return redis.error_reply('NOMESSAGE') end
if cjson.decode(raw)['role'] ~= 'assistant' then return redis.error_reply('NOREPLY') end
for p = 4, #ARGV, 2 do
  local name = at .. ':' .. ARGV[p]
  if ARGV[p + 1] == '' then redis.call('HDEL', KEYS[2], name) else redis.call('HSET', KEYS[2], name, ARGV[p + 1]) end
end
local approved = 0
for _, name in ipairs(redis.call('HKEYS', KEYS[2])) do
  if string.sub(name, -9) == ':approved' then approved = 1 break end
end
if approved == 1 then redis.call('SADD', KEYS[3], ARGV[1]) else redis.call('SREM', KEYS[3], ARGV[1]) end
-- Feedback lives exactly as long as the conversation it is about.
local left = redis.call('PTTL', KEYS[1])
if left > 0 then redis.call('PEXPIRE', KEYS[2], left) end
return 1
"""

# Delete a conversation and every index entry that points at it. KEYS: the six parts (meta
# third), index, approved set. ARGV: id. Returns 1 when the conversation existed.
DELETE_CONVERSATION = """
local existed = redis.call('EXISTS', KEYS[3])
for _, name in ipairs(redis.call('HKEYS', KEYS[3])) do
  if string.sub(name, 1, 6) == 'agent:' then redis.call('ZREM', 'chatbot:agent:' .. string.sub(name, 7), ARGV[1]) end
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6])
redis.call('ZREM', KEYS[7], ARGV[1])
redis.call('SREM', KEYS[8], ARGV[1])
return existed
"""
