-- select.lua: a user selects one customer by hand (rule 4, rule 9).
--
-- KEYS[1] dh:{o:N}:ready        marker: this owner's locks are loaded
-- KEYS[2] dh:{o:N}:cust:<cid>   hash: user, token, since, assignment, segment, mode
-- KEYS[3] dh:{o:N}:user:<uid>   string: the customer id the user holds
-- KEYS[4] dh:{o:N}:sel          hash: customer id -> live row JSON
-- KEYS[5] dh:{o:N}:fence        fencing counter
-- ARGV[1] customer id, ARGV[2] user id, ARGV[3] assignment id or '', ARGV[4] segment id or '',
-- ARGV[5] mode ('list' / 'manual'), ARGV[6] now (epoch ms, from the caller's clock)
--
-- Returns one of
--   {'SELECTED', token, since, assignment, segment, mode}  a new selection
--   {'RESUMED',  token, since, assignment, segment, mode}  the user already holds it (reconnect)
--   {'ALREADY_SELECTED', holder user id, since}
--   {'USER_HAS_SELECTION', customer id the user holds}
-- or the error 'NOT_READY' when the owner's locks were not loaded (rebuild from the database).
--
-- Invariant: a user holds at most one customer and a customer is held by at most one user; the
-- customer key, the user key and the live row change together, and every new selection gets a
-- fencing token larger than any handed out before.

if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NOT_READY selection locks not loaded for this data owner')
end

local held = redis.call('HMGET', KEYS[2], 'user', 'token', 'since', 'assignment', 'segment', 'mode')
if held[1] then
  if held[1] == ARGV[2] then
    -- Rule 9: coming back to the customer you hold returns the same selection, same token.
    return {'RESUMED', held[2], held[3], held[4], held[5], held[6]}
  end
  return {'ALREADY_SELECTED', held[1], held[3]}
end

local mine = redis.call('GET', KEYS[3])
if mine then
  return {'USER_HAS_SELECTION', mine}
end

local token = string.format('%d', redis.call('INCR', KEYS[5]))
local function num(v)
  if v == '' then return 'null' end
  return v
end
redis.call('HSET', KEYS[2], 'user', ARGV[2], 'token', token, 'since', ARGV[6],
  'assignment', ARGV[3], 'segment', ARGV[4], 'mode', ARGV[5])
redis.call('SET', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[4], ARGV[1],
  '{"user_id":' .. ARGV[2] .. ',"customer_id":' .. ARGV[1] ..
  ',"assignment_id":' .. num(ARGV[3]) .. ',"segment_id":' .. num(ARGV[4]) ..
  ',"since":' .. ARGV[6] .. ',"token":' .. token .. ',"mode":' .. cjson.encode(ARGV[5]) .. '}')
return {'SELECTED', token, ARGV[6], ARGV[3], ARGV[4], ARGV[5]}
