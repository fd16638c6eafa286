// Package natstest runs a NATS JetStream cluster of three real nats-server processes on
// loopback for tests that must lose a server, as an operator's cluster loses a machine:
// a server in the test's own process could not be killed without the test.
//
// Each server is the test binary itself, re-executed with the nats-server module's
// server inside it (no nats-server binary needs to be installed), so a test binary that
// starts a cluster must call [ServeIfChild] first thing in its TestMain.
package natstest

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// childEnv makes the test binary run one nats-server instead of the tests.
const childEnv = "GUARDYN_TEST_NATS_CHILD"

// ServeIfChild runs one clustered nats-server and exits when this process was started
// as one by [Start]; otherwise it returns at once. Call it first in TestMain.
func ServeIfChild() {
	if spec := os.Getenv(childEnv); spec != "" {
		os.Exit(runChild(spec))
	}
}

// childSpec is one clustered server's configuration, passed as JSON.
type childSpec struct {
	Name        string
	Dir         string
	Port        int
	ClusterPort int
	Routes      string
	User, Pass  string
}

func runChild(spec string) int {
	var c childSpec
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		fmt.Fprintln(os.Stderr, "child nats:", err)
		return 2
	}
	so := &server.Options{
		ServerName: c.Name,
		Host:       "127.0.0.1",
		Port:       c.Port,
		JetStream:  true,
		StoreDir:   c.Dir,
		Username:   c.User,
		Password:   c.Pass,
		NoSigs:     true,
		Cluster: server.ClusterOpts{
			Name: "guardyn-test",
			Host: "127.0.0.1",
			Port: c.ClusterPort,
		},
		Routes: server.RoutesFromStr(c.Routes),
	}
	ns, err := server.NewServer(so)
	if err != nil {
		fmt.Fprintln(os.Stderr, "child nats:", err)
		return 2
	}
	ns.Start()
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
	ns.Shutdown()
	ns.WaitForShutdown()
	return 0
}

// FreePorts returns n distinct loopback ports that were free a moment ago.
func FreePorts(tb testing.TB, n int) []int {
	tb.Helper()
	var ports []int
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// Cluster is three nats-server processes clustered on loopback, stopped when the test
// ends.
type Cluster struct {
	// Names are the servers' names (n1, n2, n3), as stream infos name leaders.
	Names []string
	// URLs are the servers' client URLs, in the order of Names.
	URLs  []string
	procs map[string]*exec.Cmd
}

// Start starts a cluster whose clients log in as user with pass (no auth when both are
// empty). A client that dials it at once may have to wait for JetStream's leader
// election.
func Start(tb testing.TB, user, pass string) *Cluster {
	tb.Helper()
	ports := FreePorts(tb, 6)
	var routes []string
	for i := range 3 {
		routes = append(routes, "nats://127.0.0.1:"+strconv.Itoa(ports[3+i]))
	}
	c := &Cluster{procs: map[string]*exec.Cmd{}}
	for i := range 3 {
		spec := childSpec{
			Name: fmt.Sprintf("n%d", i+1), Dir: tb.TempDir(), Port: ports[i], ClusterPort: ports[3+i],
			Routes: strings.Join(routes, ","), User: user, Pass: pass,
		}
		js, _ := json.Marshal(spec)
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), childEnv+"="+string(js))
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		c.Names = append(c.Names, spec.Name)
		c.URLs = append(c.URLs, fmt.Sprintf("nats://127.0.0.1:%d", ports[i]))
		c.procs[spec.Name] = cmd
	}
	tb.Cleanup(func() {
		for _, cmd := range c.procs {
			cmd.Process.Signal(syscall.SIGTERM)
		}
		for _, cmd := range c.procs {
			cmd.Wait()
		}
	})
	return c
}

// Kill ends server name as a crashed machine would: SIGKILL, nothing flushed.
func (c *Cluster) Kill(tb testing.TB, name string) {
	tb.Helper()
	cmd, ok := c.procs[name]
	if !ok {
		tb.Fatalf("natstest: no running server %q", name)
	}
	if err := cmd.Process.Kill(); err != nil {
		tb.Fatal(err)
	}
	cmd.Wait()
	delete(c.procs, name)
}
