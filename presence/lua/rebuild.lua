-- rebuild.lua: load an owner's locks from the database after Redis lost them (restart,
-- FLUSHALL, failover), then mark the owner ready so select and claim run again.
--
-- KEYS[1] dh:{o:N}:ready   marker: this owner's locks are loaded
-- KEYS[2] dh:{o:N}:sel     hash: customer id -> live row JSON
-- KEYS[3] dh:{o:N}:fence   fencing counter
-- ARGV[1] key prefix 'dh:{o:N}:' (customer and user keys share the owner's hash tag)
-- ARGV[2] min fence: the database's high-water token
-- ARGV[3] now (epoch ms), stored in the ready marker
-- ARGV[4] JSON array of holders, each
--         [customer id, user id, token, since, assignment id or '', segment id or '', mode],
--         every element a string
--
-- Returns {'LOADED', loaded, skipped, fence} or {'ALREADY_READY', 0, 0, fence}.
--
-- Invariants: runs at most once per loss (the ready marker), so concurrent rebuilders are
-- harmless; loading keeps rule 4 (a holder whose customer or user is taken already is skipped);
-- the fence becomes max(current, min fence, every token loaded), so tokens keep growing across
-- the loss and a stale screen's token can never match a new selection.

local function fence_text(n)
  return string.format('%d', n)
end

if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'ALREADY_READY', 0, 0, fence_text(tonumber(redis.call('GET', KEYS[3]) or '0'))}
end

local fence = tonumber(redis.call('GET', KEYS[3]) or '0')
local min_fence = tonumber(ARGV[2])
if min_fence > fence then
  fence = min_fence
end

local loaded, skipped = 0, 0
for _, h in ipairs(cjson.decode(ARGV[4])) do
  local cid, uid, token, since, aid, sid, mode = h[1], h[2], h[3], h[4], h[5], h[6], h[7]
  local cust = ARGV[1] .. 'cust:' .. cid
  local user = ARGV[1] .. 'user:' .. uid
  if redis.call('EXISTS', cust) == 0 and redis.call('EXISTS', user) == 0 then
    local aid_json, sid_json = aid, sid
    if aid == '' then aid_json = 'null' end
    if sid == '' then sid_json = 'null' end
    redis.call('HSET', cust, 'user', uid, 'token', token, 'since', since,
      'assignment', aid, 'segment', sid, 'mode', mode)
    redis.call('SET', user, cid)
    redis.call('HSET', KEYS[2], cid,
      '{"user_id":' .. uid .. ',"customer_id":' .. cid ..
      ',"assignment_id":' .. aid_json .. ',"segment_id":' .. sid_json ..
      ',"since":' .. since .. ',"token":' .. token .. ',"mode":' .. cjson.encode(mode) .. '}')
    loaded = loaded + 1
  else
    skipped = skipped + 1
  end
  if tonumber(token) > fence then
    fence = tonumber(token)
  end
end

redis.call('SET', KEYS[3], fence_text(fence))
redis.call('SET', KEYS[1], ARGV[3])
return {'LOADED', loaded, skipped, fence_text(fence)}
