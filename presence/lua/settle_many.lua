-- settle_many.lua: settle.lua for many moves on of one data owner that committed together (a
-- group commit's batch: presence/service.py), each in turn. Built with the bodies of release.lua
-- and settle.lua as local functions (presence/scripts.py).
--
-- What every settle.lua call shares is sent once, the rest per move on:
-- KEYS[1..2] dh:{o:N}:sel, dh:{o:N}:ready
-- KEYS       then per move on in turn: cust:<released cid>, cust:<new cid> (sel when none)
-- ARGV[1..2] how many (n), prefix
-- ARGV       then per move on in turn: released customer id, its holder, its token, the new
--            selection's user id ('' when there is none), its token
-- (all keys in the owner's hash slot, each named in KEYS)
--
-- Returns n settle.lua replies, in order.

local n = tonumber(ARGV[1])
local sel, ready, prefix = KEYS[1], KEYS[2], ARGV[2]
local replies = {}
for i = 0, n - 1 do
  local k, a = 2 + i * 2, 2 + i * 5
  replies[i + 1] = settle(
    {KEYS[k + 1], sel, ready, KEYS[k + 2]},
    {prefix, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], '0', ARGV[a + 4], ARGV[a + 5]})
end
return replies
