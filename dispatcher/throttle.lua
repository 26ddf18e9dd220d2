-- Sliding-window limiter with reservations and pacing, shared by every worker of a sender.
--
-- Rule: in any window of WINDOW microseconds, the weights of the grants inside it sum
-- to at most LEVEL (a request costs destinations x messages; Meta counts messages).
-- Grants are handed out in time order: a caller gets a start time ("at", never before
-- the latest grant) and sleeps until it, so waiting workers queue fairly instead of
-- polling. Redis's own clock (TIME) is the only clock, so hosts need not agree.
--
-- Pacing: each grant also pushes the next one back by its weight's share of the window
-- (KEYS[2] "next"), so grants come evenly, never as a whole window's worth at once and
-- then nothing. A window that fills in a burst is met at LINK by the next window's
-- burst as soon as a request arrives a little late; an even stream tolerates that.
--
-- Adaptive: KEYS[3] holds the sender's rate factor after a rate-limit signal (Meta
-- errors 4, 80007, 130429; see throttle_penalise.lua). The level used is
-- level x factor, the factor growing back by RECOVERY per second to 1; never below
-- the request's own weight (a request cannot be split).
--
-- KEYS[1]  sorted set: member "<seq>:<weight>", score = grant time (microseconds)
-- KEYS[2]  hash: total = sum of weights in KEYS[1], seq = member counter,
--          next = earliest time of the next grant (microseconds)
-- KEYS[3]  hash: factor, at (microseconds) -- absent: factor 1
-- ARGV     level, weight, window_us, max_wait_us, recovery (factor per second)
-- returns  {1, wait_us, at_us, spacing_us} granted at at_us = now + wait_us (Redis
--          clock); spacing_us is one message's share of the window at the level in
--          force (the caller may spread the grant's requests over weight x spacing_us);
--          {0, wait_us, at_us, spacing_us} not granted: the earliest slot is further
--          away than max_wait_us (ask again later)
local zkey, hkey = KEYS[1], KEYS[2]
local level = tonumber(ARGV[1])
local weight = tonumber(ARGV[2])
local window = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local recovery = tonumber(ARGV[5])
if weight > level then
  return redis.error_reply("weight " .. weight .. " exceeds the level " .. level)
end

local clock = redis.call("TIME")
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])

local adapt = redis.call("HMGET", KEYS[3], "factor", "at")
if adapt[1] then
  local factor = tonumber(adapt[1]) + recovery * (now - tonumber(adapt[2])) / 1000000
  if factor < 1 then
    level = math.max(weight, math.floor(level * factor))
  end
end

local function weight_of(member)
  return tonumber(string.match(member, ":(%d+)$"))
end

-- Grants older than one window can never share a window with a new grant.
local total = tonumber(redis.call("HGET", hkey, "total") or "0")
local expired = redis.call("ZRANGEBYSCORE", zkey, "-inf", now - window)
if #expired > 0 then
  for _, member in ipairs(expired) do
    total = total - weight_of(member)
  end
  redis.call("ZREMRANGEBYSCORE", zkey, "-inf", now - window)
end

-- Start no earlier than the latest grant, then move later until the window ending at
-- "at" has room: each oldest grant stops counting one window after its own time.
local at = now
local latest = redis.call("ZRANGE", zkey, -1, -1, "WITHSCORES")
if #latest > 0 and tonumber(latest[2]) > at then
  at = tonumber(latest[2])
end
local paced = tonumber(redis.call("HGET", hkey, "next") or "0")
if paced > at then
  at = paced
end
local spacing = window / level
local counted = total
local index = 0
while counted + weight > level do
  local oldest = redis.call("ZRANGE", zkey, index, index, "WITHSCORES")
  if #oldest == 0 then
    break
  end
  counted = counted - weight_of(oldest[1])
  local leaves = tonumber(oldest[2]) + window
  if leaves > at then
    at = leaves
  end
  index = index + 1
end

local wait = at - now
if wait > max_wait then
  redis.call("HSET", hkey, "total", total)
  return {0, wait, at, math.floor(spacing)}
end
local seq = redis.call("HINCRBY", hkey, "seq", 1)
redis.call("ZADD", zkey, at, seq .. ":" .. weight)
redis.call("HSET", hkey, "total", total + weight, "next", math.floor(at + weight * spacing))
local ttl_ms = math.ceil((wait + 2 * window) / 1000)
redis.call("PEXPIRE", zkey, ttl_ms)
redis.call("PEXPIRE", hkey, ttl_ms)
return {1, wait, at, math.floor(spacing)}
