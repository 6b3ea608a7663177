-- release_user.lua: end whatever selection a user holds (work.stop, rule 7).
--
-- KEYS[1] dh:{o:N}:user:<uid>   string: the customer id the user holds
-- KEYS[2] dh:{o:N}:sel          hash: customer id -> live row JSON
-- KEYS[3] dh:{o:N}:ready        marker: this owner's locks are loaded
-- ARGV[1] key prefix 'dh:{o:N}:' (the customer key is read from KEYS[1]; same hash tag)
-- ARGV[2] user id
--
-- Returns {'RELEASED', customer id, token, since, assignment, segment, mode} or {'NONE'}; the
-- error 'NOT_READY' when the owner's locks were not loaded (rebuild from the database first).
--
-- Invariant: the user key, the customer key and the live row go together; a customer key that
-- names another user is left alone (it is that user's lock).

if redis.call('EXISTS', KEYS[3]) == 0 then
  return redis.error_reply('NOT_READY selection locks not loaded for this data owner')
end
local cid = redis.call('GET', KEYS[1])
if not cid then
  return {'NONE'}
end
redis.call('DEL', KEYS[1])
local cust = ARGV[1] .. 'cust:' .. cid
local held = redis.call('HMGET', cust, 'user', 'token', 'since', 'assignment', 'segment', 'mode')
if held[1] ~= ARGV[2] then
  return {'NONE'}
end
redis.call('DEL', cust)
redis.call('HDEL', KEYS[2], cid)
return {'RELEASED', cid, held[2], held[3], held[4], held[5], held[6]}
