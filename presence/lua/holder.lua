-- holder.lua: who holds one customer, read together with the owner's ready marker.
--
-- KEYS[1] dh:{o:N}:ready        marker: this owner's locks are loaded
-- KEYS[2] dh:{o:N}:sel          hash: customer id -> live row JSON
-- ARGV[1] customer id
--
-- Returns the live row JSON, or nil when nobody holds it; the error 'NOT_READY' when the
-- owner's locks were not loaded (a Redis that lost its data would wrongly answer "nobody").

if redis.call('EXISTS', KEYS[1]) == 0 then
  return redis.error_reply('NOT_READY selection locks not loaded for this data owner')
end
return redis.call('HGET', KEYS[2], ARGV[1])
