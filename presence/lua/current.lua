-- current.lua: the selection a user holds, read in one step.
--
-- KEYS[1] dh:{o:N}:user:<uid>   string: the customer id the user holds
-- KEYS[2] dh:{o:N}:sel          hash: customer id -> live row JSON
-- KEYS[3] dh:{o:N}:ready        marker: this owner's locks are loaded
--
-- Returns the live row JSON, or nil when the user holds nothing; the error 'NOT_READY' when
-- the owner's locks were not loaded (an empty answer from a Redis that lost its data would
-- wrongly say "holds nothing").
--
-- Invariant kept: none (read only); reading both keys atomically means a concurrent release
-- can never make the user key and the row disagree in what this returns.

if redis.call('EXISTS', KEYS[3]) == 0 then
  return redis.error_reply('NOT_READY selection locks not loaded for this data owner')
end
local cid = redis.call('GET', KEYS[1])
if not cid then
  return false
end
return redis.call('HGET', KEYS[2], cid)
