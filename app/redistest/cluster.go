package redistest

import (
	"context"
	"os/exec"
	"slices"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Cluster is a Redis Cluster of masters without replicas, each a
// redis-server on free loopback ports with its data in the test's temp
// dir, made with redis-cli --cluster create as an operator would.
type Cluster struct {
	Nodes []*Server
}

// StartCluster runs a cluster of masters until the test ends, and returns
// once every node says that the cluster is up.
func StartCluster(t testing.TB, masters int) *Cluster {
	t.Helper()
	requireRedis(t, "redis-cli")
	c := &Cluster{}
	create := []string{"--cluster", "create"}
	for range masters {
		// The cluster bus gets a port of its own: the default, the port
		// plus 10000, may be taken or out of range.
		ports := freePorts(t, 2)
		n := startOn(t, ports[0], nil, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
			"--cluster-port", strconv.Itoa(ports[1]))
		c.Nodes = append(c.Nodes, n)
		create = append(create, n.Addr())
	}
	create = append(create, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command("redis-cli", create...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, n := range c.Nodes {
		n.AwaitLog(t, "Cluster state changed: ok")
	}
	return c
}

// Addrs are the nodes' host:port addresses.
func (c *Cluster) Addrs() []string {
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.Addr())
	}
	return addrs
}

// Client is a cluster client for the test's own commands, closed when the
// test ends.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	t.Helper()
	client := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { client.Close() })
	return client
}

// MasterOf is the address of the master that holds key's slot, as the
// cluster's nodes say (CLUSTER KEYSLOT, CLUSTER SLOTS).
func (c *Cluster) MasterOf(t testing.TB, key string) string {
	t.Helper()
	ctx := context.Background()
	node := c.Nodes[0].Client(t)
	slot, err := node.ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	return c.owner(t, node, int(slot)).Addr
}

func (c *Cluster) owner(t testing.TB, node *redis.Client, slot int) redis.ClusterNode {
	t.Helper()
	ranges, err := node.ClusterSlots(context.Background()).Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range ranges {
		if r.Start <= slot && slot <= r.End && len(r.Nodes) > 0 {
			return r.Nodes[0]
		}
	}
	t.Fatalf("no node holds slot %d", slot)
	return redis.ClusterNode{}
}

// MoveSlot moves key's slot, with its keys, to the master at addr, as
// redis-cli --cluster reshard does: the target imports it, the source
// migrates its keys, and then every node is told the new owner, the
// target first and the source next. A step between the steps, such as a
// publish, runs while the slot is half moved.
func (c *Cluster) MoveSlot(t testing.TB, key, addr string) {
	t.Helper()
	ctx := context.Background()
	clients := map[string]*redis.Client{}
	ids := map[string]string{}
	for _, n := range c.Nodes {
		client := n.Client(t)
		id, err := client.Do(ctx, "CLUSTER", "MYID").Text()
		if err != nil {
			t.Fatal(err)
		}
		clients[n.Addr()], ids[n.Addr()] = client, id
	}
	slot64, err := clients[addr].ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	slot := int(slot64)
	from := c.owner(t, clients[addr], slot).Addr
	if from == addr {
		t.Fatalf("slot %d is on %s already", slot, addr)
	}
	do := func(node string, args ...any) {
		t.Helper()
		if err := clients[node].Do(ctx, args...).Err(); err != nil {
			t.Fatalf("%s: %v: %v", node, args, err)
		}
	}
	do(addr, "CLUSTER", "SETSLOT", slot, "IMPORTING", ids[from])
	do(from, "CLUSTER", "SETSLOT", slot, "MIGRATING", ids[addr])
	host, port := "127.0.0.1", addr[len("127.0.0.1:"):]
	for {
		keys, err := clients[from].ClusterGetKeysInSlot(ctx, slot, 100).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) == 0 {
			break
		}
		args := []any{"MIGRATE", host, port, "", 0, 5000, "KEYS"}
		for _, k := range keys {
			args = append(args, k)
		}
		do(from, args...)
	}
	order := []string{addr, from}
	for node := range clients {
		if !slices.Contains(order, node) {
			order = append(order, node)
		}
	}
	for _, node := range order {
		do(node, "CLUSTER", "SETSLOT", slot, "NODE", ids[addr])
	}
}
