// The Lua scripts that make each Redis step atomic.

package redisbroker

import "github.com/redis/go-redis/v9"

// How the publish script announces a message to the other instances
// (its last argument).
const (
	// announcePublish publishes it on the instances' channel.
	announcePublish = "publish"
	// announceShard publishes it on the topic's shard channel (Redis
	// Cluster), which only the topic's master carries.
	announceShard = "spublish"
	// announceLater leaves it to the caller, once replicas hold the
	// message (Sentinel): the script marks the topic's announced id as
	// it starts the topic, and the announcement moves it on.
	announceLater = "later"
)

// sequenceLua starts the topic's sequence when Redis has none, at ARGV[1],
// the time in microseconds, and sets epoch to where it started: an
// instance that sees the epoch change knows that Redis lost the topic and
// that ids of before and after cannot be compared. KEYS[1] is the counter,
// KEYS[2] the start, KEYS[5] the last id announced, ARGV[4] the TTL in
// milliseconds; the script that includes it sets marked when it keeps the
// last id announced.
const sequenceLua = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[4])
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[4])
  local before = redis.call('DECR', KEYS[1])
  if marked then redis.call('SET', KEYS[5], string.format('%d', before), 'PX', ARGV[4]) end
end
local epoch = redis.call('GET', KEYS[2])
if not epoch then -- the start alone was lost: count from here as a new run
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch, 'PX', ARGV[4])
end
`

// publishScript numbers and keeps one message atomically, announces it as
// ARGV[10] says (see announcePublish), and counts the topic's subscribers
// on the other instances from the presence hash. KEYS: counter, sequence
// start, stream, presence, last id announced, and the publish's key when
// it has one. ARGV: the time in microseconds, the text, the history size,
// the TTL in milliseconds, the channel, the topic, the time in
// milliseconds before which a count is stale, this instance's field in the
// hash, how long to keep the publish's key in milliseconds, and how to
// announce. An announcement is "topic\nepoch\nid\nmicros\ntext". It
// returns the id, the count, the time, the epoch and 0. A publish whose
// key Redis holds is not published again: it returns the first one's id
// and time, and 1, or, when the key came with another text, the error
// KEYREUSED.
// Ids are formatted with %d: Lua's default number format would round
// them.
var publishScript = redis.NewScript(`
local marked = ARGV[10] == '` + announceLater + `'
local function elsewhere()
  local subscribers = 0
  local counts = redis.call('HGETALL', KEYS[4])
  for i = 1, #counts, 2 do
    local n, stamp = string.match(counts[i + 1], '^(%d+):(%d+)$')
    if counts[i] ~= ARGV[8] and n and tonumber(stamp) >= tonumber(ARGV[7]) then subscribers = subscribers + tonumber(n) end
  end
  return subscribers
end
local digest = KEYS[6] and redis.sha1hex(ARGV[2])
if KEYS[6] then
  local first = redis.call('GET', KEYS[6])
  if first then
    local firstID, firstMicros, firstDigest = string.match(first, '^(%d+):(%d+):(%x+)$')
    if firstDigest ~= digest then return redis.error_reply('KEYREUSED the key came with another message') end
    -- A write, so that a WAIT after the script waits for the first
    -- publish too, whichever connection made it.
    if marked then redis.call('PEXPIRE', KEYS[6], ARGV[9]) end
    return {firstID, elsewhere(), firstMicros, redis.call('GET', KEYS[2]) or '', 1}
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
local announcement = ARGV[6] .. '\n' .. epoch .. '\n' .. ids .. '\n' .. ARGV[1] .. '\n' .. ARGV[2]
if ARGV[10] == '` + announcePublish + `' then
  redis.call('PUBLISH', ARGV[5], announcement)
elseif ARGV[10] == '` + announceShard + `' then
  redis.call('SPUBLISH', ARGV[5], announcement)
else
  redis.call('PEXPIRE', KEYS[5], ARGV[4])
end
if KEYS[6] then
  redis.call('SET', KEYS[6], ids .. ':' .. ARGV[1] .. ':' .. digest, 'PX', ARGV[9])
end
return {ids, elsewhere(), ARGV[1], epoch, 0}
`)

// seedScript reads where a topic stands, starting its sequence if Redis
// has none, so that every instance agrees on it: it returns the epoch and
// the last id that subscribers may see, which is the last id announced
// when ARGV[5] is announceLater (falling back on the counter for a topic
// from before it was kept), else the last id given. KEYS as for
// publishScript; ARGV[1] and ARGV[4] as for it.
var seedScript = redis.NewScript(`
local marked = ARGV[5] == '` + announceLater + `'
` + sequenceLua + `
local last = marked and redis.call('GET', KEYS[5]) or redis.call('GET', KEYS[1])
return {epoch, last}
`)

// announceScript announces a message whose publish replicas hold, and
// moves the topic's last id announced up to it, so that instances that
// seed or catch up read as far as that and no further. KEYS[1]: the last
// id announced. ARGV: the id, the TTL in milliseconds, the channel, the
// announcement.
var announceScript = redis.NewScript(`
local announced = redis.call('GET', KEYS[1])
if not announced or tonumber(announced) < tonumber(ARGV[1]) then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
`)
