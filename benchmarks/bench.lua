-- The benchmark cases as Lua scripts (one per case, separated by lines starting with "-- case:").
-- scripts/bench.sh loads each with SCRIPT LOAD and runs it with EVALSHA.
-- case: int
return 42
-- case: rmw
local v = tonumber(redis.call('GET', KEYS[1]) or '0') + 1
redis.call('SET', KEYS[1], v)
return v
-- case: rmwfx
local v = tonumber(redis.call('GET', KEYS[1]) or '0') + 1
redis.call('SET', KEYS[1], v)
return v
-- case: incr
return redis.call('INCR', KEYS[1])
-- case: push
return redis.call('RPUSH', KEYS[1], ARGV[1])
-- case: hset
return redis.call('HSET', KEYS[1], unpack(ARGV))
-- case: zsum
local r = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
local sum = 0
for i = 2, #r, 2 do sum = sum + tonumber(r[i]) end
return tostring(sum)
-- case: lsum
local r = redis.call('LRANGE', KEYS[1], 0, -1)
local sum = 0
for i = 1, #r do sum = sum + tonumber(r[i]) end
return sum
-- case: hsum
local r = redis.call('HGETALL', KEYS[1])
local sum = 0
for i = 2, #r, 2 do sum = sum + tonumber(r[i]) end
return sum
-- case: lrange
local r = redis.call('LRANGE', KEYS[1], 0, -1)
local sum = 0
for i = 1, #r do sum = sum + tonumber(r[i]) end
return sum
-- case: loop
local x = 2463534242
for i = 1, 10000 do
  x = bit.bxor(x, bit.lshift(x, 13)) % 4294967296
  x = bit.bxor(x, bit.rshift(x % 4294967296, 17)) % 4294967296
  x = bit.bxor(x, bit.lshift(x, 5)) % 4294967296
end
return x
-- case: echo
return ARGV[1]
-- case: array
local t = {}
for i = 0, 99 do t[#t + 1] = i end
return t
