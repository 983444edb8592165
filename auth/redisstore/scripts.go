package redisstore

import "github.com/redis/go-redis/v9"

// Every script gets the same five keys (see Store.keys) and, as ARGV[1]
// to ARGV[3], the initial version, the creation time and the change
// channel. Versions stay below 2^53, so Lua's numbers hold them exactly;
// they are never turned into strings in Lua (tostring would round them).

// prelude defines current, which initialises the store when its version
// key is missing (a new or a wiped Redis) and returns the version; bump,
// which increments the version and announces the change; and later, which
// compares two 19-digit times.
const prelude = `
local function current()
  local v = redis.call('GET', KEYS[1])
  if not v then
    redis.call('SET', KEYS[1], ARGV[1])
    redis.call('SET', KEYS[2], ARGV[2])
    v = ARGV[1]
  end
  return tonumber(v)
end
local function bump()
  current()
  local v = redis.call('INCR', KEYS[1])
  redis.pcall('PUBLISH', ARGV[3], 'changed') -- a notice only: never fail a change for it
  return v
end
local function later(a, b)
  local ah, bh = tonumber(string.sub(a, 1, 10)), tonumber(string.sub(b, 1, 10))
  if ah ~= bh then return ah > bh end
  return tonumber(string.sub(a, 11)) > tonumber(string.sub(b, 11))
end
`

// putScript: ARGV[4] id, ARGV[5] encoded record, ARGV[6] folded username.
// Returns {0} if the id is taken, else {1, version}.
var putScript = redis.NewScript(prelude + `
if redis.call('HEXISTS', KEYS[3], ARGV[4]) == 1 then return {0} end
redis.call('HSET', KEYS[3], ARGV[4], ARGV[5])
redis.call('HSET', KEYS[4], ARGV[4], ARGV[6])
return {1, bump()}
`)

// deleteScript: ARGV[4...] ids. Returns {version, {deleted ids}}.
var deleteScript = redis.NewScript(prelude + `
local del = {}
for i = 4, #ARGV do
  if redis.call('HDEL', KEYS[3], ARGV[i]) == 1 then
    redis.call('HDEL', KEYS[4], ARGV[i])
    del[#del + 1] = ARGV[i]
  end
end
if #del == 0 then return {current(), del} end
return {bump(), del}
`)

// revokeScript: ARGV[4] folded username, ARGV[5] revocation time as 19
// digits of Unix nanoseconds. Returns {version, {deleted ids}}.
var revokeScript = redis.NewScript(prelude + `
local owners = redis.call('HGETALL', KEYS[4])
local del = {}
for i = 1, #owners, 2 do
  if owners[i + 1] == ARGV[4] then del[#del + 1] = owners[i] end
end
for _, id in ipairs(del) do
  redis.call('HDEL', KEYS[3], id)
  redis.call('HDEL', KEYS[4], id)
end
local prev = redis.call('HGET', KEYS[5], ARGV[4])
local changed = #del > 0
if (not prev) or later(ARGV[5], prev) then
  redis.call('HSET', KEYS[5], ARGV[4], ARGV[5])
  changed = true
end
if not changed then return {current(), del} end
return {bump(), del}
`)

// initScript initialises the store if needed and returns its version.
var initScript = redis.NewScript(prelude + `
return current()
`)

// loadScript returns {version, created, records (id, json, ...),
// revocations (user, time, ...)} at one instant.
var loadScript = redis.NewScript(prelude + `
return {current(), redis.call('GET', KEYS[2]) or '', redis.call('HGETALL', KEYS[3]), redis.call('HGETALL', KEYS[5])}
`)
