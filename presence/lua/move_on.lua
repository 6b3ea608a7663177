-- move_on.lua: an agent moves on in one step (rules 7, 10): its selection ends (release.lua,
-- as the holder, with the selection's token) and the next right customer of the hopper becomes
-- its selection (claim_next.lua). Built with those two scripts' bodies as the local functions
-- `release` and `claim_next` (presence/scripts.py), so each rule is written once.
--
-- KEYS[1..3] release.lua's KEYS: dh:{o:N}:cust:<held cid>, dh:{o:N}:sel, dh:{o:N}:ready
-- KEYS[4..9] claim_next.lua's KEYS: ready, user:<uid>, sel, fence, hop:<..>, hopseg:<..>
-- ARGV[1..5] release.lua's ARGV: prefix, held customer id, user id, token, '0'
-- ARGV[6..11] claim_next.lua's ARGV: prefix, user id, assignment id, mode, now, scan limit
--
-- Returns {release's reply, claim_next's reply}; the second is empty when nothing was released
-- (the token was not the live one: the caller's transaction rolls back and nothing changed).
-- Or the error 'NOT_READY' when the owner's locks were not loaded.
--
-- Invariant: as its two parts'; between them no other command runs, so the customer let go of
-- can not be handed to anyone in between, and the user holds at most one customer throughout.

local released = release({KEYS[1], KEYS[2], KEYS[3]}, {ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]})
if released.err then
  return released
end
if released[1] ~= 'RELEASED' then
  return {released, {}}
end
local claimed = claim_next({KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9]},
  {ARGV[6], ARGV[7], ARGV[8], ARGV[9], ARGV[10], ARGV[11]})
if claimed.err then
  return claimed
end
return {released, claimed}
