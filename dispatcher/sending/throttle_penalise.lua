-- Lower a sender's rate after a rate-limit signal (Meta errors 4, 80007, 130429 in a
-- response or a delivery report, a gateway's 429). The cut is sized by the evidence:
-- the messages refused, as a share of a second at the level, plus a fixed step; at
-- least that step, at most MOST. Seven refusals at 1,000 msg/s (a second that carried
-- 1,007 when a loop stalled) take 5.7 % off for a few seconds, not half for fifty. A
-- count can overstate the overrun (a gateway's 429 refuses a whole request; reports of
-- several seconds arrive together): one episode never cuts more than MOST, and a
-- level far above the account's comes down episode by episode, as it did by halves.
--
-- Signals within HOLD of the first one are one episode: several workers (and the
-- applier) each see part of the same refused second, so their counts add up, and the
-- cut is taken again from the factor the episode began with, never compounded.
--
-- KEYS[1]  hash: factor, at (microseconds, when factor was set), cut_at (the episode's
--          start), base (the factor then), refused (messages so far in the episode)
-- ARGV     refused, level, step, most, floor, hold_us, recovery (factor per second)
-- returns  the factor now (as a string: Lua numbers would be truncated)
local key = KEYS[1]
local refused, level = tonumber(ARGV[1]), tonumber(ARGV[2])
local step, most, floor = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local hold, recovery = tonumber(ARGV[6]), tonumber(ARGV[7])
local clock = redis.call("TIME")
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local state = redis.call("HMGET", key, "factor", "at", "cut_at", "base", "refused")
local factor = 1
if state[1] then
  factor = math.min(1, tonumber(state[1]) + recovery * (now - tonumber(state[2])) / 1000000)
end
local base, cut_at = factor, now
if state[3] and state[4] and now - tonumber(state[3]) < hold then
  base, cut_at = tonumber(state[4]), tonumber(state[3])
  refused = refused + tonumber(state[5] or 0)
end
local cut = math.min(most, step + refused / level)
local wanted = math.max(floor, base * (1 - cut))
if wanted >= factor then  -- no deeper than the episode's cut so far (or the floor)
  redis.call("HSET", key, "refused", refused)
  return tostring(factor)
end
redis.call("HSET", key, "factor", tostring(wanted), "at", now, "cut_at", cut_at,
           "base", tostring(base), "refused", refused)
-- Gone once fully recovered (an absent key means factor 1), but not within the hold:
-- the episode's count and base are kept while it lasts.
local ttl_ms = 86400000
if recovery > 0 then
  ttl_ms = math.min(ttl_ms, math.ceil((1 - wanted) / recovery * 1000) + 1000)
  ttl_ms = math.max(ttl_ms, math.ceil(hold / 1000) + 1000)
end
redis.call("PEXPIRE", key, ttl_ms)
return tostring(wanted)
