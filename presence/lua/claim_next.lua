-- claim_next.lua: hand the next right customer of a hopper to a user (rules 4, 10, 12).
--
-- KEYS[1] dh:{o:N}:ready                  marker: this owner's locks are loaded
-- KEYS[2] dh:{o:N}:user:<uid>             string: the customer id the user holds
-- KEYS[3] dh:{o:N}:sel                    hash: customer id -> live row JSON
-- KEYS[4] dh:{o:N}:fence                  fencing counter
-- KEYS[5] dh:{o:N}:hop:<aid>:<segset>     zset: candidate customer ids, score = hand-out order
-- KEYS[6] dh:{o:N}:hopseg:<aid>:<segset>  hash: candidate customer id -> segment id
-- ARGV[1] key prefix 'dh:{o:N}:' (customer keys are named by the candidates popped; they share
--         the owner's hash tag, so they live in the same slot as KEYS)
-- ARGV[2] user id, ARGV[3] assignment id, ARGV[4] mode, ARGV[5] now (epoch ms),
-- ARGV[6] most candidates to pop in this call (bounds the script's run time)
--
-- Returns one of
--   {'CLAIMED', customer id, token, since, segment id or '', hopper length left, skipped}
--   {'EMPTY', hopper length left, skipped}   nothing free found (left > 0: the scan limit hit)
--   {'USER_HAS_SELECTION', customer id the user holds}
-- or the error 'NOT_READY' when the owner's locks were not loaded (rebuild from the database).
--
-- Invariant: a candidate leaves the hopper and becomes the user's selection in one step, and a
-- candidate someone holds is dropped, never handed out, so no customer goes to two users
-- (rule 12). The customer key, the user key and the live row change together (rule 4).

if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NOT_READY selection locks not loaded for this data owner')
end

local mine = redis.call('GET', KEYS[2])
if mine then
  return {'USER_HAS_SELECTION', mine}
end

local skipped = 0
for _ = 1, tonumber(ARGV[6]) do
  local popped = redis.call('ZPOPMIN', KEYS[5])
  if #popped == 0 then
    break
  end
  local cid = popped[1]
  local segment = redis.call('HGET', KEYS[6], cid) or ''
  redis.call('HDEL', KEYS[6], cid)
  local cust = ARGV[1] .. 'cust:' .. cid
  if redis.call('EXISTS', cust) == 0 then
    local token = string.format('%d', redis.call('INCR', KEYS[4]))
    local segment_json = segment
    if segment == '' then segment_json = 'null' end
    redis.call('HSET', cust, 'user', ARGV[2], 'token', token, 'since', ARGV[5],
      'assignment', ARGV[3], 'segment', segment, 'mode', ARGV[4])
    redis.call('SET', KEYS[2], cid)
    redis.call('HSET', KEYS[3], cid,
      '{"user_id":' .. ARGV[2] .. ',"customer_id":' .. cid ..
      ',"assignment_id":' .. ARGV[3] .. ',"segment_id":' .. segment_json ..
      ',"since":' .. ARGV[5] .. ',"token":' .. token .. ',"mode":' .. cjson.encode(ARGV[4]) .. '}')
    return {'CLAIMED', cid, token, ARGV[5], segment, redis.call('ZCARD', KEYS[5]), skipped}
  end
  -- Held by someone (a manual select, or another hopper's claim): drop it; a later refill
  -- brings it back once it is released and still available (rule 12).
  skipped = skipped + 1
end
return {'EMPTY', redis.call('ZCARD', KEYS[5]), skipped}
