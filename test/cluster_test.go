package test

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"go.uber.org/zap"

	"github.com/dbusers/dbusers/internal/config"
	"github.com/dbusers/dbusers/internal/mysqltest"
	"github.com/dbusers/dbusers/internal/service"
)

// clusterNode is one node of the in-process cluster.
type clusterNode struct {
	file string
	srv  *server.Server
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startNode loads the node's file from deploy/ (with the environment the
// test set) and runs it.
func (n *clusterNode) start(t *testing.T) {
	t.Helper()
	opts, err := server.ProcessConfigFile(n.file)
	if err != nil {
		t.Fatalf("load %s: %v", n.file, err)
	}
	if opts.JetStreamKey != "cluster-test-store-key" || opts.JetStreamCipher != server.ChaCha {
		t.Fatalf("%s does not encrypt its store with $DBUSERS_NATS_STORE_KEY, but deploy/worker-cluster.yaml says it does", n.file)
	}
	opts.NoSigs, opts.NoLog = true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	if !s.ReadyForConnections(20 * time.Second) {
		t.Fatalf("%s not ready", n.file)
	}
	n.srv = s
}

func (n *clusterNode) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

// TestClusterNodeLost runs the worker on the 3-node JetStream cluster of
// deploy/nats-cluster (the files as shipped, addresses from the
// environment as in production) with deploy/worker-cluster.yaml's settings
// (R3); one node is killed mid-run and restarted: nothing is lost and no
// job has two effects. It runs in a process of its own, since the files
// take their addresses from the environment.
func TestClusterNodeLost(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a 3-node cluster")
	}
	if !inOwnProcess(t) {
		return
	}
	var nodes []*clusterNode
	var clientURLs []string
	for i := 1; i <= 3; i++ {
		client, route := freePort(t), freePort(t)
		t.Setenv(fmt.Sprintf("DBUSERS_NATS_%d_CLIENT", i), fmt.Sprintf("127.0.0.1:%d", client))
		t.Setenv(fmt.Sprintf("DBUSERS_NATS_%d_ROUTE", i), fmt.Sprintf("127.0.0.1:%d", route))
		t.Setenv(fmt.Sprintf("DBUSERS_NATS_%d_MONITOR", i), fmt.Sprintf("127.0.0.1:%d", freePort(t)))
		t.Setenv(fmt.Sprintf("DBUSERS_NATS_%d_STORE", i), t.TempDir())
		t.Setenv(fmt.Sprintf("DBUSERS_NATS_ROUTE_%d", i), fmt.Sprintf("nats-route://127.0.0.1:%d", route))
		clientURLs = append(clientURLs, fmt.Sprintf("nats://127.0.0.1:%d", client))
		t.Setenv("DBUSERS_NATS_STORE_KEY", "cluster-test-store-key")
		nodes = append(nodes, &clusterNode{file: filepath.Join("..", "deploy", "nats-cluster", fmt.Sprintf("node-%d.conf", i))})
	}
	for _, n := range nodes {
		n.start(t)
		t.Cleanup(n.stop)
	}
	url := strings.Join(clientURLs, ",")
	waitForJetStream(t, url)

	f := mysqltest.NewFixture(t, mysqltest.Options{})
	t.Setenv("DBUSERS_NATS_URL", url)
	t.Setenv("DBUSERS_NATS_CREDS", "")
	t.Setenv("MY_APP_ADMIN_PASSWORD", "unused")
	cfg, err := config.Load(filepath.Join("..", "deploy", "worker-cluster.yaml"))
	if err != nil {
		t.Fatalf("load deploy/worker-cluster.yaml: %v", err)
	}
	if cfg.NATS.Replicas != 3 || !cfg.NATS.StoreEncrypted {
		t.Fatalf("worker-cluster.yaml has replicas %d and store_encrypted %v, want 3 and true", cfg.NATS.Replicas, cfg.NATS.StoreEncrypted)
	}
	// Only what cannot exist on a test machine changes: the targets, the
	// key file, the HTTP port, and shorter timers.
	cfg.Targets = []config.Target{target("cl", f)}
	cfg.Vault.XKeySeedFile = filepath.Join(t.TempDir(), "worker.xk")
	cfg.HTTP.Listen = ""
	cfg.NATS.AckWait, cfg.NATS.LeaseTTL = 3*time.Second, 3*time.Second
	logs := &logBuffer{}
	svc, err := service.Start(t.Context(), cfg, service.Options{Logger: zapTo(logs)})
	if err != nil {
		t.Fatalf("start worker: %v", err)
	}
	t.Cleanup(func() { _ = svc.Stop() })

	e := &env{t: t, nc: connect(t, url), svc: svc, logs: logs}
	e.js = jetstreamFor(t, e.nc)
	sub, err := e.nc.SubscribeSync(prefix + ".results.>")
	if err != nil {
		t.Fatal(err)
	}
	plan := userPlan(t, []string{"cl"}, 40)
	want := publishPlan(t, e.nc, plan[:len(plan)/2])
	// Lose the node the worker is connected to, mid-run.
	lost := nodes[0]
	for i, u := range clientURLs {
		if u == svc.ClientURL() {
			lost = nodes[i]
		}
	}
	lost.stop()
	for id := range publishPlan(t, e.nc, plan[len(plan)/2:]) {
		want[id] = true
	}
	time.Sleep(2 * time.Second)
	lost.start(t)
	results := collect(t, sub, want, 3*time.Minute)
	verifyPlan(t, e, map[string]*mysqltest.Fixture{"cl": f}, plan, results)
	if t.Failed() {
		t.Logf("worker log:\n%s", logs.String())
	}
}

// waitForJetStream waits until the cluster has a JetStream meta leader.
func waitForJetStream(t *testing.T, url string) {
	t.Helper()
	nc := connect(t, url)
	js := jetstreamFor(t, nc)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := js.AccountInfo(t.Context()); err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the cluster has no JetStream leader after 30s")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func zapTo(w *logBuffer) *zap.Logger {
	return zap.New(zapcoreFor(w))
}
