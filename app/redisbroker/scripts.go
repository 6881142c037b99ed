// The Lua scripts that make each Redis step atomic.

package redisbroker

import "github.com/redis/go-redis/v9"

// sequenceLua starts the topic's sequence when Redis has none, at ARGV[1],
// the time in microseconds, and sets epoch to where it started: an
// instance that sees the epoch change knows that Redis lost the topic and
// that ids of before and after cannot be compared. KEYS[1] is the counter,
// KEYS[2] the start, ARGV[4] the TTL in milliseconds.
const sequenceLua = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[4])
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
  redis.call('DECR', KEYS[1])
end
local epoch = redis.call('GET', KEYS[2])
if not epoch then -- the start alone was lost: count from here as a new run
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch, 'PX', ARGV[4])
end
`

// publishScript numbers, keeps and announces one message atomically, and
// counts the topic's subscribers on the other instances from the presence
// hash. KEYS: counter, sequence start, stream, presence, and the publish's
// key when it has one. ARGV: the time in microseconds, the text, the
// history size, the TTL in milliseconds, the channel, the topic, the time
// in milliseconds before which a count is stale, this instance's field in
// the hash, and how long to keep the publish's key in milliseconds. It
// announces "topic\nepoch\nid\nmicros\ntext" and returns the id, the
// count and the time. A publish whose key Redis holds is not published
// again: it returns the first one's id and time, or, when the key came
// with another text, the error KEYREUSED. Ids are formatted with %d: Lua's
// default number format would round them.
var publishScript = redis.NewScript(`
local function elsewhere()
  local subscribers = 0
  local counts = redis.call('HGETALL', KEYS[4])
  for i = 1, #counts, 2 do
    local n, stamp = string.match(counts[i + 1], '^(%d+):(%d+)$')
    if counts[i] ~= ARGV[8] and n and tonumber(stamp) >= tonumber(ARGV[7]) then subscribers = subscribers + tonumber(n) end
  end
  return subscribers
end
local digest = KEYS[5] and redis.sha1hex(ARGV[2])
if KEYS[5] then
  local first = redis.call('GET', KEYS[5])
  if first then
    local firstID, firstMicros, firstDigest = string.match(first, '^(%d+):(%d+):(%x+)$')
    if firstDigest ~= digest then return redis.error_reply('KEYREUSED the key came with another message') end
    return {firstID, elsewhere(), firstMicros}
  end
end
` + sequenceLua + `
local id = redis.call('INCR', KEYS[1])
local ids = string.format('%d', id)
if tonumber(ARGV[3]) > 0 then
  redis.call('XADD', KEYS[3], 'MAXLEN', ARGV[3], ids .. '-1', 't', ARGV[1], 'm', ARGV[2])
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
redis.call('PUBLISH', ARGV[5], ARGV[6] .. '\n' .. epoch .. '\n' .. ids .. '\n' .. ARGV[1] .. '\n' .. ARGV[2])
if KEYS[5] then
  redis.call('SET', KEYS[5], ids .. ':' .. ARGV[1] .. ':' .. digest, 'PX', ARGV[9])
end
return {ids, elsewhere(), ARGV[1]}
`)

// seedScript reads where a topic stands, starting its sequence if Redis
// has none, so that every instance agrees on it: it returns the epoch and
// the last id. KEYS and ARGV as for publishScript (ARGV[1] and ARGV[4]
// only).
var seedScript = redis.NewScript(sequenceLua + `
return {epoch, redis.call('GET', KEYS[1])}
`)
