-- settle.lua: after a release (and the selection made in its place) committed in the database,
-- in one step: let go again of the released selection if a rebuild from the database, which
-- read just before that commit, put it back (release.lua as the holder, same token: a newer
-- selection is never touched); and say whether the new selection is still held (rule 8: else
-- the caller undoes its record). Built with release.lua's body as the local function `release`.
--
-- KEYS[1..3] release.lua's KEYS: dh:{o:N}:cust:<released cid>, dh:{o:N}:sel, dh:{o:N}:ready
-- KEYS[4] dh:{o:N}:cust:<new cid> (any key of the owner when there is no new selection)
-- ARGV[1..5] release.lua's ARGV: prefix, released customer id, its holder, its token, '0'
-- ARGV[6] the new selection's user id ('' when there is none), ARGV[7] its token
--
-- Returns {'READY', '1' or '0': the new selection is held} or {'NOT_READY', '0'} when the
-- owner's locks are not loaded (nothing done: the caller loads them, then looks again).

if redis.call('EXISTS', KEYS[3]) == 0 then
  return {'NOT_READY', '0'}
end
release({KEYS[1], KEYS[2], KEYS[3]}, {ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]})
local held = '0'
if ARGV[6] ~= '' then
  local live = redis.call('HMGET', KEYS[4], 'user', 'token')
  if live[1] == ARGV[6] and live[2] == ARGV[7] then
    held = '1'
  end
end
return {'READY', held}
