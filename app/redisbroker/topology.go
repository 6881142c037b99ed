// How the broker reaches Redis: one node, Sentinel or a Cluster, through
// go-redis's clients for each, and how it checks that Redis answers.

package redisbroker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"herald/app"
)

// Mode is how a broker reaches Redis.
type Mode string

// The modes, as Options choose them.
const (
	// ModeSingle is one Redis, at Options.URL.
	ModeSingle Mode = "single"
	// ModeSentinel is the master that the Sentinels at Options.Addrs name
	// Options.MasterName, followed through failovers.
	ModeSentinel Mode = "sentinel"
	// ModeCluster is a Redis Cluster, found from the nodes at
	// Options.Addrs.
	ModeCluster Mode = "cluster"
)

// Mode is the mode that o chooses: Sentinel with a master name, a Cluster
// with addresses alone, else one Redis.
func (o Options) Mode() Mode {
	switch {
	case o.MasterName != "":
		return ModeSentinel
	case len(o.Addrs) > 0:
		return ModeCluster
	}
	return ModeSingle
}

// waitsForReplicas reports whether a publish is acknowledged only once
// replicas hold it.
func (b *Broker) waitsForReplicas() bool { return b.mode == ModeSentinel && b.opts.MinReplicas > 0 }

// connect makes the broker's clients: go-redis's client for the mode, and
// the publisher, the same but never retrying. For Sentinel, it also makes a
// client of each Sentinel, to ask which node is the master.
func (b *Broker) connect() error {
	tlsConfig, err := b.opts.tlsConfig()
	if err != nil {
		return err
	}
	b.tls = tlsConfig
	opts := b.opts
	if b.mode == ModeSingle {
		clientOpts, err := redis.ParseURL(opts.URL)
		if err != nil {
			return fmt.Errorf("redis.url: %w", err)
		}
		if clientOpts.Username == "" && clientOpts.Password == "" {
			clientOpts.Username, clientOpts.Password = opts.Username, opts.Password
		}
		if tlsConfig != nil && clientOpts.TLSConfig != nil {
			clientOpts.TLSConfig.RootCAs = tlsConfig.RootCAs
		}
		if opts.Timeout > 0 {
			clientOpts.DialTimeout, clientOpts.ReadTimeout, clientOpts.WriteTimeout = opts.Timeout, opts.Timeout, opts.Timeout
		}
		publisherOpts := *clientOpts
		publisherOpts.MaxRetries = -1
		b.client, b.publisher = redis.NewClient(clientOpts), redis.NewClient(&publisherOpts)
		return nil
	}
	universal := &redis.UniversalOptions{
		Addrs:            opts.Addrs,
		MasterName:       opts.MasterName,
		Username:         opts.Username,
		Password:         opts.Password,
		SentinelUsername: opts.SentinelUsername,
		SentinelPassword: opts.SentinelPassword,
		TLSConfig:        tlsConfig,
		DialTimeout:      opts.Timeout,
		ReadTimeout:      opts.Timeout,
		WriteTimeout:     opts.Timeout,
		// One address without a master name is a cluster too, such as a
		// cloud's configuration endpoint.
		IsClusterMode: b.mode == ModeCluster,
	}
	// A publish is never sent twice: not retried after a timeout, and not
	// sent on to another node by a cluster's redirection either, which
	// go-redis also does after a lost connection.
	publisherOpts := *universal
	publisherOpts.MaxRetries, publisherOpts.MaxRedirects = -1, -1
	b.client, b.publisher = redis.NewUniversalClient(universal), redis.NewUniversalClient(&publisherOpts)
	if b.mode == ModeSentinel {
		for _, addr := range opts.Addrs {
			b.sentinels = append(b.sentinels, redis.NewSentinelClient(&redis.Options{
				Addr: addr, Username: opts.SentinelUsername, Password: opts.SentinelPassword, TLSConfig: tlsConfig,
				DialTimeout: opts.Timeout, ReadTimeout: opts.Timeout, WriteTimeout: opts.Timeout,
			}))
		}
	}
	return nil
}

// nodeOptions are the options of a client of one node at addr, with the
// data nodes' credentials and TLS.
func (b *Broker) nodeOptions(addr string) *redis.Options {
	return &redis.Options{
		Addr: addr, Username: b.opts.Username, Password: b.opts.Password, TLSConfig: b.tls,
		DialTimeout: b.opts.Timeout, ReadTimeout: b.opts.Timeout, WriteTimeout: b.opts.Timeout,
	}
}

// tlsConfig is the TLS configuration for the nodes in Addrs, or for a
// rediss:// URL's CA file; nil without TLS.
func (o Options) tlsConfig() (*tls.Config, error) {
	if !o.TLS && o.TLSCAFile == "" {
		return nil, nil
	}
	config := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.TLSCAFile != "" {
		pem, err := os.ReadFile(o.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls_ca_file: %w", err)
		}
		config.RootCAs = x509.NewCertPool()
		if !config.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis.tls_ca_file: %s holds no PEM certificate", o.TLSCAFile)
		}
	}
	return config, nil
}

// Describe names the Redis that o reaches, for errors and logs.
func (o Options) Describe() string {
	switch o.Mode() {
	case ModeSentinel:
		return fmt.Sprintf("redis master %q (Sentinels at %s)", o.MasterName, strings.Join(o.Addrs, ", "))
	case ModeCluster:
		return "redis cluster (nodes at " + strings.Join(o.Addrs, ", ") + ")"
	}
	addr := o.URL
	if clientOpts, err := redis.ParseURL(o.URL); err == nil {
		addr = clientOpts.Addr
	}
	return "redis at " + addr
}

// check finds whether Redis answers as its mode needs, and records what
// it found for Topology: one Redis answers a ping; with Sentinel, a
// Sentinel names the master and the master answers as one; in a cluster,
// every master answers.
func (b *Broker) check(ctx context.Context) error {
	topology := app.BrokerTopology{Mode: string(b.mode)}
	defer func() { b.topology.Store(&topology) }()
	switch b.mode {
	case ModeSentinel:
		master, err := b.masterAddr(ctx)
		if err != nil {
			return err
		}
		topology.Master = master
		role, err := b.client.Do(ctx, "ROLE").Slice()
		if err != nil {
			return fmt.Errorf("master %s: %w", master, err)
		}
		if len(role) < 3 || role[0] != "master" {
			return fmt.Errorf("%s is not a master yet", master)
		}
		replicas, _ := role[2].([]any)
		topology.Replicas = new(len(replicas))
		return nil
	case ModeCluster:
		var mu sync.Mutex
		var failures []error
		var masters, answering int
		defer func() { topology.Masters, topology.Answering = &masters, &answering }()
		err := b.client.(*redis.ClusterClient).ForEachMaster(ctx, func(ctx context.Context, master *redis.Client) error {
			err := master.Ping(ctx).Err()
			mu.Lock()
			defer mu.Unlock()
			masters++
			if err != nil {
				failures = append(failures, fmt.Errorf("master %s: %w", master.Options().Addr, err))
			} else {
				answering++
			}
			return nil
		})
		if err != nil {
			failures = append(failures, err)
		}
		if len(failures) > 0 || masters == 0 {
			return fmt.Errorf("%d of %d masters answer: %w", answering, masters, errors.Join(failures...))
		}
		return nil
	}
	return b.client.Ping(ctx).Err()
}

// masterAddr asks the Sentinels, in turn, which node is the master.
func (b *Broker) masterAddr(ctx context.Context) (string, error) {
	var errs []error
	for i, sentinel := range b.sentinels {
		addr, err := sentinel.GetMasterAddrByName(ctx, b.opts.MasterName).Result()
		if err == nil && len(addr) == 2 {
			return net.JoinHostPort(addr[0], addr[1]), nil
		}
		errs = append(errs, fmt.Errorf("sentinel %s: %w", b.opts.Addrs[i], err))
	}
	return "", fmt.Errorf("no sentinel names the master %q: %w", b.opts.MasterName, errors.Join(errs...))
}

// Topology is how the broker reaches Redis, as its last check found it.
func (b *Broker) Topology() app.BrokerTopology {
	if t := b.topology.Load(); t != nil {
		return *t
	}
	return app.BrokerTopology{Mode: string(b.mode)}
}
