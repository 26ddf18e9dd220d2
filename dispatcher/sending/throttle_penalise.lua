-- Lower a sender's rate after a rate-limit signal (Meta errors 4, 80007, 130429 in a
-- response or a delivery report). The factor read by throttle.lua is cut to CUT times
-- its current (recovering) value, not below FLOOR, at most once per HOLD: one
-- throttled request fails many messages at once, and that is one signal, not many.
--
-- KEYS[1]  hash: factor, at (microseconds, when factor was set), cut_at
-- ARGV     cut, floor, hold_us, recovery (factor per second)
-- returns  the factor now (as a string: Lua numbers would be truncated)
local key = KEYS[1]
local cut, floor = tonumber(ARGV[1]), tonumber(ARGV[2])
local hold, recovery = tonumber(ARGV[3]), tonumber(ARGV[4])
local clock = redis.call("TIME")
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local state = redis.call("HMGET", key, "factor", "at", "cut_at")
local factor = 1
if state[1] then
  factor = math.min(1, tonumber(state[1]) + recovery * (now - tonumber(state[2])) / 1000000)
end
if state[3] and now - tonumber(state[3]) < hold then
  return tostring(factor)
end
factor = math.max(floor, factor * cut)
redis.call("HSET", key, "factor", tostring(factor), "at", now, "cut_at", now)
-- Gone once fully recovered: an absent key means factor 1.
local ttl_ms = 86400000
if recovery > 0 then
  ttl_ms = math.min(ttl_ms, math.ceil((1 - factor) / recovery * 1000) + 1000)
end
redis.call("PEXPIRE", key, ttl_ms)
return tostring(factor)
