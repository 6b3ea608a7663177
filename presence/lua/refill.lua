-- refill.lua: append candidates to a hopper in the order given (rules 10, 12).
--
-- KEYS[1] dh:{o:N}:hop:<aid>:<segset>     zset: candidate customer ids, score = hand-out order
-- KEYS[2] dh:{o:N}:hopseg:<aid>:<segset>  hash: candidate customer id -> segment id
-- ARGV[1] key prefix 'dh:{o:N}:' (customer keys share the owner's hash tag, hence the slot)
-- ARGV[2] 'back': after every id waiting; 'front': before every id waiting (due shared
--         follow-ups, rule 11), ids already waiting moved up there too
-- ARGV[3] the candidates in order, one string: 'id:segment,id:segment,...' (segment id may be
--         empty). One argument instead of two per candidate: a refill's thousands of ids cost
--         the client one string to send, not thousands of arguments to encode.
--
-- Returns {added, hopper length}.
--
-- Invariant: a customer is in a hopper at most once, and never while someone holds it, however
-- many refills run at once; the ids given keep their order.

local CHUNK = 1000 -- members per variadic call (unpack's stack is bounded)
local front = ARGV[2] == 'front'

local ids, segments = {}, {}
for cid, segment in string.gmatch(ARGV[3], '(%d+):(%d*)') do
  ids[#ids + 1] = cid
  segments[#segments + 1] = segment
end

-- Which are waiting already: one ZMSCORE per chunk, not one ZSCORE per id.
local queued = {}
for first = 1, #ids, CHUNK do
  local last = math.min(first + CHUNK - 1, #ids)
  local scores = redis.call('ZMSCORE', KEYS[1], unpack(ids, first, last))
  for j = 1, #scores do
    if scores[j] then
      queued[ids[first + j - 1]] = true
    end
  end
end

local score = 0
if front then
  local head = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #head > 0 then
    score = tonumber(head[2]) - #ids - 1
  end
else
  local tail = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if #tail > 0 then
    score = tonumber(tail[2])
  end
end

local members, segment_of = {}, {}
local added = 0
for i = 1, #ids do
  local cid = ids[i]
  local waiting = queued[cid]
  -- Back: a waiting id keeps its place. Front: it moves up. Held: never in a hopper.
  if (front or not waiting) and redis.call('EXISTS', ARGV[1] .. 'cust:' .. cid) == 0 then
    score = score + 1
    members[#members + 1] = score
    members[#members + 1] = cid
    if segments[i] ~= '' then
      segment_of[#segment_of + 1] = cid
      segment_of[#segment_of + 1] = segments[i]
    end
    if not waiting then
      added = added + 1
      queued[cid] = true -- named twice in one call: added once
    end
  end
end
-- score, member / field, value pairs: CHUNK pairs per call
local function write(command, key, pairs)
  for first = 1, #pairs, 2 * CHUNK do
    redis.call(command, key, unpack(pairs, first, math.min(first + 2 * CHUNK - 1, #pairs)))
  end
end
write('ZADD', KEYS[1], members)
write('HSET', KEYS[2], segment_of)
return {added, redis.call('ZCARD', KEYS[1])}
