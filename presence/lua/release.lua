-- release.lua: end one customer's selection (rule 7): by its holder, or by a supervisor.
--
-- KEYS[1] dh:{o:N}:cust:<cid>   hash: user, token, since, assignment, segment, mode
-- KEYS[2] dh:{o:N}:sel          hash: customer id -> live row JSON
-- KEYS[3] dh:{o:N}:ready        marker: this owner's locks are loaded
-- ARGV[1] key prefix 'dh:{o:N}:' (the holder's user key is read from KEYS[1]; same hash tag)
-- ARGV[2] customer id, ARGV[3] releasing user id, ARGV[4] expected token or '' (no check),
-- ARGV[5] '1' when the caller has the right to release anyone's selection, else '0'
--
-- Returns one of
--   {'RELEASED', former holder, token, since, assignment, segment, mode}
--   {'NONE'}                                 nobody holds it (and no token was given)
--   {'SELECTION_LOST', holder or '', token or ''}  the given token is not the live one
--   {'NOT_HOLDER', holder, since}             someone else holds it and ARGV[5] is '0'
-- or the error 'NOT_READY' when the owner's locks were not loaded (rebuild from the database).
--
-- Invariant: the customer key, the holder's user key and the live row go together, so a user
-- whose customer was released holds nothing; a stale token never releases a newer selection.

if redis.call('EXISTS', KEYS[3]) == 0 then
  return redis.error_reply('NOT_READY selection locks not loaded for this data owner')
end
local held = redis.call('HMGET', KEYS[1], 'user', 'token', 'since', 'assignment', 'segment', 'mode')
if not held[1] then
  if ARGV[4] ~= '' then
    return {'SELECTION_LOST', '', ''}
  end
  return {'NONE'}
end
if ARGV[4] ~= '' and ARGV[4] ~= held[2] then
  return {'SELECTION_LOST', held[1], held[2]}
end
if ARGV[5] ~= '1' and held[1] ~= ARGV[3] then
  return {'NOT_HOLDER', held[1], held[3]}
end

redis.call('DEL', KEYS[1])
redis.call('HDEL', KEYS[2], ARGV[2])
local user = ARGV[1] .. 'user:' .. held[1]
if redis.call('GET', user) == ARGV[2] then
  redis.call('DEL', user)
end
return {'RELEASED', held[1], held[2], held[3], held[4], held[5], held[6]}
