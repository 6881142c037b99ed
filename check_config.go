package main

import (
	"fmt"
	"io"
	"strings"

	"herald/app/access"
	"herald/app/redisbroker"
)

// checkConfig validates a configuration as run would load it and prints the
// values in force, environment included.
func checkConfig(path string, given bool, getenv func(string) string, stdout io.Writer) error {
	cfg, source, err := loadConfig(path, given, getenv)
	if err != nil {
		return err
	}
	secrets, err := cfg.ReadSecrets(source, getenv)
	if err != nil {
		return err
	}
	policy := secrets.Policy
	if source.Name == builtInDefaults {
		fmt.Fprintf(stdout, "# No config file at %s: Herald runs on its built-in defaults, which are valid. The values in force (tokens hidden):\n%s",
			path, cfg.Redacted().YAML())
	} else {
		fmt.Fprintf(stdout, "# %s is valid. The values in force (tokens hidden):\n%s", source.Name, cfg.Redacted().YAML())
	}
	fmt.Fprintf(stdout, "# Clients without a token may %s (security.anonymous: %s).\n", describeRights(policy.Anonymous()), cfg.Security.Anonymous)
	if !policy.TakesCredentials() {
		var nobody []string
		for _, a := range []struct {
			action access.Action
			verb   string
		}{{access.Read, "subscribe"}, {access.Write, "publish"}} {
			if !policy.Anonymous().Allows(a.action, "any") {
				nobody = append(nobody, a.verb)
			}
		}
		if len(nobody) > 0 {
			fmt.Fprintf(stdout, "# No token or JWT key is configured, so no client can %s.\n", strings.Join(nobody, " or "))
		}
	}
	if cfg.Broker == "redis" {
		fmt.Fprintf(stdout, "# %s\n", describeRedis(redisOptions(cfg, secrets)))
	}
	if cfg.Push.Enabled {
		fmt.Fprintf(stdout, "# %s\n", pushKeptIn(cfg))
	}
	if len(cfg.Security.AllowedHosts) == 0 {
		fmt.Fprintln(stdout, "# security.allowed_hosts is empty: only localhost names and IP addresses are answered.\n# A server reached by a public name must list that name there.")
	}
	return nil
}

// describeRights words what a grant on every topic allows.
func describeRights(g *access.Grant) string {
	read, write := g.Allows(access.Read, "any"), g.Allows(access.Write, "any")
	switch {
	case read && write:
		return "subscribe and publish"
	case read:
		return "subscribe, but not publish"
	case write:
		return "publish, but not subscribe"
	}
	return "neither subscribe nor publish"
}

// describeRedis says how Herald reaches Redis with opts, and when a
// publish is acknowledged.
func describeRedis(opts redisbroker.Options) string {
	switch opts.Mode() {
	case redisbroker.ModeSentinel:
		acknowledged := "once the master holds it (redis.min_replicas: 0): a failover can lose the last ones"
		if opts.MinReplicas > 0 {
			acknowledged = fmt.Sprintf("once the master and %d of its replicas hold it (redis.min_replicas)", opts.MinReplicas)
		}
		return fmt.Sprintf("Redis mode: sentinel, %s; a publish is acknowledged %s.", opts.Describe(), acknowledged)
	case redisbroker.ModeCluster:
		return fmt.Sprintf("Redis mode: cluster, %s; each topic's keys share a slot; a publish is acknowledged once the topic's master holds it (redis.min_replicas is for Sentinel).", opts.Describe())
	}
	return fmt.Sprintf("Redis mode: single, %s; a publish is acknowledged once Redis holds it.", opts.Describe())
}
