package main

import (
	"testing"

	"herald/app/redistest"
)

// redisServer is a real redis-server for one test (see redistest).
type redisServer struct {
	*redistest.Server
}

func startRedis(t *testing.T) *redisServer {
	t.Helper()
	return &redisServer{redistest.Start(t)}
}

// heraldYAML is the config of one instance over this Redis.
func (r *redisServer) heraldYAML() string {
	return "broker: redis\nredis:\n  url: " + r.URL() + "\n  timeout: 2s\n"
}
