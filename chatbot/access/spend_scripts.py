"""The spending limits' server-side Lua script: check the limits and hold an API call's estimate in one step.

It holds the calls against the desk's limits (chatbot/access/spending.py) and against each API
key's daily tokens (chatbot/access/api_keys.py: the key's day hash, no cost or conversation limit).

Checking and then spending in two round trips let concurrent calls all pass the check at 97% of a
limit and all spend (six of them ended at 143%). In one script, Redis runs each check-and-hold
whole, so every call sees the holds of the calls admitted before it.
"""

# KEYS: today's spend hash, the conversation's spend hash, the holds hash.
# ARGV: now (epoch seconds), hold id, tokens, cost, conversation id, daily token limit, daily cost
# limit, conversation token limit (0: off), hold lifetime in seconds, how long a day's hash is kept.
# A hold is one field of the holds hash: "tokens cost expires conversation". Holds past their
# lifetime (a process that died mid-call) are dropped here, so they stop counting by themselves.
# A call is admitted while what is spent plus what is held stays under each limit; it then holds
# its own estimate and counts as one of the day's requests. Returns {limit, used}: limit "" when admitted, else the limit reached
# ("daily_cost", "daily_tokens", "conversation") with what is spent and held against it.
RESERVE = """
local now = tonumber(ARGV[1])
local held_tokens, held_cost, held_conversation = 0, 0, 0
local holds = redis.call('HGETALL', KEYS[3])
for i = 1, #holds, 2 do
  local tokens, cost, expires, conversation = string.match(holds[i + 1], '^(%S+) (%S+) (%S+) ?(.*)$')
  if not expires or tonumber(expires) <= now then
    redis.call('HDEL', KEYS[3], holds[i])
  else
    held_tokens = held_tokens + tonumber(tokens)
    held_cost = held_cost + tonumber(cost)
    if conversation == ARGV[5] then held_conversation = held_conversation + tonumber(tokens) end
  end
end
local function spent(key, field) return tonumber(redis.call('HGET', key, field) or '0') end
local daily_tokens, daily_cost, conversation_tokens = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
if daily_cost > 0 then
  local used = spent(KEYS[1], 'cost') + held_cost
  if used >= daily_cost then return {'daily_cost', tostring(used)} end
end
if daily_tokens > 0 then
  local used = spent(KEYS[1], 'tokens') + held_tokens
  if used >= daily_tokens then return {'daily_tokens', tostring(used)} end
end
if conversation_tokens > 0 and ARGV[5] ~= '' then
  local used = spent(KEYS[2], 'tokens') + held_conversation
  if used >= conversation_tokens then return {'conversation', tostring(used)} end
end
local lifetime = tonumber(ARGV[9])
redis.call('HINCRBY', KEYS[1], 'requests', 1)
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[10]))
redis.call('HSET', KEYS[3], ARGV[2], ARGV[3] .. ' ' .. ARGV[4] .. ' ' .. string.format('%.3f', now + lifetime) .. ' ' .. ARGV[5])
redis.call('EXPIRE', KEYS[3], lifetime)
return {'', '0'}
"""
