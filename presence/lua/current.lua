-- current.lua: the selection a user holds, read in one step.
--
-- KEYS[1] dh:{o:N}:user:<uid>   string: the customer id the user holds
-- KEYS[2] dh:{o:N}:sel          hash: customer id -> live row JSON
--
-- Returns the live row JSON, or nil when the user holds nothing.
--
-- Invariant kept: none (read only); reading both keys atomically means a concurrent release
-- can never make the user key and the row disagree in what this returns.

local cid = redis.call('GET', KEYS[1])
if not cid then
  return false
end
return redis.call('HGET', KEYS[2], cid)
