-- refill.lua: append candidates to a hopper in the order given (rules 10, 12).
--
-- KEYS[1] dh:{o:N}:hop:<aid>:<segset>     zset: candidate customer ids, score = hand-out order
-- KEYS[2] dh:{o:N}:hopseg:<aid>:<segset>  hash: candidate customer id -> segment id
-- ARGV[1] key prefix 'dh:{o:N}:' (customer keys share the owner's hash tag, hence the slot)
-- ARGV[2] 'back': after every id waiting; 'front': before every id waiting (due shared
--         follow-ups, rule 11), ids already waiting moved up there too
-- ARGV[3], ARGV[4], ... pairs: customer id, segment id or ''
--
-- Returns {added, hopper length}.
--
-- Invariant: a customer is in a hopper at most once, and never while someone holds it, however
-- many refills run at once; the ids given keep their order.

local front = ARGV[2] == 'front'
local score = 0
if front then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #first > 0 then
    score = tonumber(first[2]) - (#ARGV - 2) / 2 - 1
  end
else
  local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if #last > 0 then
    score = tonumber(last[2])
  end
end
local added = 0
for i = 3, #ARGV, 2 do
  local cid = ARGV[i]
  if redis.call('EXISTS', ARGV[1] .. 'cust:' .. cid) == 0 then
    local queued = redis.call('ZSCORE', KEYS[1], cid)
    if front or not queued then
      score = score + 1
      redis.call('ZADD', KEYS[1], score, cid)
      if ARGV[i + 1] ~= '' then
        redis.call('HSET', KEYS[2], cid, ARGV[i + 1])
      end
      if not queued then
        added = added + 1
      end
    end
  end
end
return {added, redis.call('ZCARD', KEYS[1])}
