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
-- ARGV     level, weight, window_us, max_wait_us, recovery (factor per second),
--          pieces: the weights of the requests the grant spreads, comma-separated, in
--          the order they leave (they sum to weight; empty: one request)
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
local pieces = {}
for piece in string.gmatch(ARGV[6] or "", "%d+") do
  pieces[#pieces + 1] = tonumber(piece)
end
if #pieces == 0 then
  pieces[1] = weight
end
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

-- Start no earlier than the latest grant, nor than the pace allows.
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
local step = math.floor(spacing)  -- as the caller spaces the pieces (whole microseconds)

-- A grant may be a slice of several requests that leave spread out, piece i at
-- at + (weight before it) x spacing: each piece counts at its own moment. (Counted all
-- at "at", a one-message piece among full slices would cost a whole slice of time.)
-- Piece i fits when the window ending at its moment holds at most level - (weight of
-- pieces 1..i) of older grants: the newest older grants up to that allowance may stay
-- in it, the next one must have left (its time + window <= piece i's moment).
-- (%d: Lua's own number-to-text conversion would round the bound to 100 us.)
local old = redis.call("ZREVRANGEBYSCORE", zkey, "+inf", string.format("(%d", at - window),
  "WITHSCORES")
local kept = {}  -- kept[k]: weight of the k newest older grants
local sum = 0
for k = 1, #old / 2 do
  sum = sum + weight_of(old[2 * k - 1])
  kept[k] = sum
end
local k = #kept  -- the first index past the allowance only moves newer as pieces add up
local through = 0
for _, piece in ipairs(pieces) do
  local before = through
  through = through + piece
  local allowance = level - through
  while k > 1 and kept[k - 1] > allowance do
    k = k - 1
  end
  if k >= 1 and kept[k] > allowance then
    local leaves = tonumber(old[2 * k]) + window - before * step
    if leaves > at then
      at = leaves
    end
  end
end

local wait = at - now
if wait > max_wait then
  redis.call("HSET", hkey, "total", total)
  return {0, wait, at, step}
end
local seq = redis.call("HINCRBY", hkey, "seq", #pieces) - #pieces
local before = 0
for i, piece in ipairs(pieces) do
  redis.call("ZADD", zkey, at + before * step, (seq + i) .. ":" .. piece)
  before = before + piece
end
redis.call("HSET", hkey, "total", total + weight, "next", math.floor(at + weight * spacing))
local ttl_ms = math.ceil((wait + 2 * window) / 1000)
redis.call("PEXPIRE", zkey, ttl_ms)
redis.call("PEXPIRE", hkey, ttl_ms)
return {1, wait, at, step}
