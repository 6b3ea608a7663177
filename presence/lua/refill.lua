-- refill.lua: append candidates to a hopper in the order given (rules 10, 12).
--
-- KEYS[1] dh:{o:N}:hop:<aid>:<segset>     zset: candidate customer ids, score = hand-out order
-- KEYS[2] dh:{o:N}:hopseg:<aid>:<segset>  hash: candidate customer id -> segment id
-- ARGV[1] key prefix 'dh:{o:N}:' (customer keys share the owner's hash tag, hence the slot)
-- ARGV[2], ARGV[3], ... pairs: customer id, segment id or ''
--
-- Returns {added, hopper length}.
--
-- Invariant: a customer is in a hopper at most once, and never while someone holds it, however
-- many refills run at once; added ids go after every id already waiting, keeping their order.

local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
local score = 0
if #last > 0 then
  score = tonumber(last[2])
end
local added = 0
for i = 2, #ARGV, 2 do
  local cid = ARGV[i]
  if redis.call('EXISTS', ARGV[1] .. 'cust:' .. cid) == 0
      and not redis.call('ZSCORE', KEYS[1], cid) then
    score = score + 1
    redis.call('ZADD', KEYS[1], score, cid)
    if ARGV[i + 1] ~= '' then
      redis.call('HSET', KEYS[2], cid, ARGV[i + 1])
    end
    added = added + 1
  end
end
return {added, redis.call('ZCARD', KEYS[1])}
