-- hand_over.lua: the selection of a dialer line passes to an agent in one step (predictive
-- dialing, rule 4): the line's selection ends (release.lua, as its holder, with its token) and
-- the agent selects the customer (select.lua), so no one else can take the customer between
-- the two. Built with those scripts' bodies as the local functions `release` and `select`.
--
-- KEYS[1..3] release.lua's KEYS: dh:{o:N}:cust:<cid>, dh:{o:N}:sel, dh:{o:N}:ready
-- KEYS[4..8] select.lua's KEYS: ready, cust:<cid>, user:<agent>, sel, fence
-- ARGV[1..5] release.lua's ARGV: prefix, customer id, line user id, line token, '0'
-- ARGV[6..9] customer id, agent id, mode, now: select.lua's ARGV but for the assignment and the
--          segment, which the agent's selection takes over from the line's
--
-- Returns {release's reply, select's reply}; the second is empty when nothing was released,
-- and nothing changed at all when the agent holds a customer already:
-- {{'USER_HAS_SELECTION', customer id the agent holds}, {}}.
-- Or the error 'NOT_READY' when the owner's locks were not loaded.
--
-- Invariant: as its two parts'; the agent is checked before the line lets go, so a refusal
-- leaves the line's selection as it was.

if redis.call('EXISTS', KEYS[3]) == 0 then
  return redis.error_reply('NOT_READY selection locks not loaded for this data owner')
end
local mine = redis.call('GET', KEYS[6])
if mine then
  return {{'USER_HAS_SELECTION', mine}, {}}
end
local released = release({KEYS[1], KEYS[2], KEYS[3]}, {ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]})
if released.err then
  return released
end
if released[1] ~= 'RELEASED' then
  return {released, {}}
end
local selected = select({KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8]},
  {ARGV[6], ARGV[7], released[5], released[6], ARGV[8], ARGV[9]})
if selected.err then
  return selected
end
return {released, selected}
