-- move_on_many.lua: many agents of one data owner move on in one step, one after another, each
-- exactly as move_on.lua (a group commit's batch: presence/service.py). Built with the bodies of
-- release.lua, claim_next.lua and move_on.lua as local functions (presence/scripts.py).
--
-- ARGV[1] how many agents (n); then, per agent in turn, move_on.lua's 11 ARGV
-- KEYS    per agent in turn, move_on.lua's 9 KEYS (all in the owner's hash slot)
--
-- Returns n move_on.lua replies, in order; or the error 'NOT_READY' when the owner's locks were
-- not loaded (found by the first agent's step, before anything changed: all or nothing).
--
-- Invariant: as move_on.lua's, for each agent; the agents' steps run in the order given, and
-- no other command runs between them.

local n = tonumber(ARGV[1])
local replies = {}
for i = 0, n - 1 do
  local keys, args = {}, {}
  for j = 1, 9 do
    keys[j] = KEYS[i * 9 + j]
  end
  for j = 1, 11 do
    args[j] = ARGV[1 + i * 11 + j]
  end
  local reply = move_on(keys, args)
  if reply.err then
    return reply
  end
  replies[i + 1] = reply
end
return replies
