-- move_on_many.lua: many agents of one data owner move on in one step, one after another, each
-- exactly as move_on.lua (a group commit's batch: presence/service.py). Built with the bodies of
-- release.lua, claim_next.lua and move_on.lua as local functions (presence/scripts.py).
--
-- What every agent's move_on.lua call shares is sent once, the rest per agent:
-- KEYS[1..3] dh:{o:N}:ready, dh:{o:N}:sel, dh:{o:N}:fence
-- KEYS       then per agent in turn: cust:<held cid>, user:<uid>, hop:<..>, hopseg:<..>
-- ARGV[1..5] how many agents (n), prefix, now, scan limit, mode
-- ARGV       then per agent in turn: held customer id, user id, token, assignment id
-- (all keys in the owner's hash slot, each named in KEYS)
--
-- Returns n move_on.lua replies, in order; or the error 'NOT_READY' when the owner's locks were
-- not loaded (found by the first agent's step, before anything changed: all or nothing).
--
-- Invariant: as move_on.lua's, for each agent; the agents' steps run in the order given, and
-- no other command runs between them.

local n = tonumber(ARGV[1])
local ready, sel, fence = KEYS[1], KEYS[2], KEYS[3]
local prefix, now, limit, mode = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local replies = {}
for i = 0, n - 1 do
  local k, a = 3 + i * 4, 5 + i * 4
  local uid = ARGV[a + 2]
  local reply = move_on(
    {KEYS[k + 1], sel, ready, ready, KEYS[k + 2], sel, fence, KEYS[k + 3], KEYS[k + 4]},
    {prefix, ARGV[a + 1], uid, ARGV[a + 3], '0', prefix, uid, ARGV[a + 4], mode, now, limit})
  if reply.err then
    return reply
  end
  replies[i + 1] = reply
end
return replies
