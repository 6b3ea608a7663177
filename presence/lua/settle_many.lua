-- settle_many.lua: settle.lua for many moves on of one data owner that committed together (a
-- group commit's batch: presence/service.py), each in turn. Built with the bodies of release.lua
-- and settle.lua as local functions (presence/scripts.py).
--
-- ARGV[1] how many (n); then, per move on in turn, settle.lua's 7 ARGV
-- KEYS    per move on in turn, settle.lua's 4 KEYS (all in the owner's hash slot)
--
-- Returns n settle.lua replies, in order.

local n = tonumber(ARGV[1])
local replies = {}
for i = 0, n - 1 do
  local keys, args = {}, {}
  for j = 1, 4 do
    keys[j] = KEYS[i * 4 + j]
  end
  for j = 1, 7 do
    args[j] = ARGV[1 + i * 7 + j]
  end
  replies[i + 1] = settle(keys, args)
end
return replies
