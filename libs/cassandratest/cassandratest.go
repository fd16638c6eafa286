// Package cassandratest runs a real Apache Cassandra for the tests of the CQL backends.
//
// Cassandra 5.0.9 (CQL-compatible with ScyllaDB, which cannot be installed here) comes
// from Maven Central as org.apache.cassandra:cassandra-all and its runtime dependencies,
// fetched once by Maven into a cache outside the checkout keyed by version ([CacheDir]).
// [Start] runs it on 127.0.0.1 with free ports, a minimal cassandra.yaml, its data in a
// directory of its own, the Java 17 flags Cassandra's launcher passes and a 1 GiB heap.
//
// Tests get an address from [Addr]: the one in GUARDYN_TEST_CQL when it is set (CI starts
// one Cassandra for the whole `go test ./...` run with cmd/testcassandra and shares it
// across packages that way), or else one Cassandra per test binary, started on first use
// and stopped by [Main]. Without Java and Maven the tests skip, saying why and how to
// install them; with CI=true they fail instead.
package cassandratest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Version is the Cassandra release the tests run.
const Version = "5.0.9"

// EnvAddr names the variable that points the tests at a running Cassandra (host:port of
// its CQL port) instead of starting one.
const EnvAddr = "GUARDYN_TEST_CQL"

// Install says how to get what the tests need.
const Install = "apt-get install openjdk-17-jre-headless maven (tools/ci/setup.sh does it), or set " + EnvAddr + "=host:port"

// ErrUnavailable means Java or Maven is missing, so no Cassandra can run here.
var ErrUnavailable = errors.New("cassandratest: java and mvn are needed to run Cassandra")

// startTimeout bounds how long Cassandra may take to open its CQL port; it takes about
// 12 s on an idle machine and more on a loaded one.
const startTimeout = 6 * time.Minute

// CacheDir is where the Cassandra jars of Version are kept: $GUARDYN_CASSANDRA_CACHE if
// set, else the user's cache directory.
func CacheDir() (string, error) {
	if d := os.Getenv("GUARDYN_CASSANDRA_CACHE"); d != "" {
		return filepath.Join(d, Version), nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cassandratest: no cache directory: %w", err)
	}
	return filepath.Join(base, "guardyn-cassandra", Version), nil
}

// pom asks Maven for cassandra-all and its runtime dependencies.
const pom = `<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.guardyn.ci</groupId>
  <artifactId>cassandra-fetch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.cassandra</groupId>
      <artifactId>cassandra-all</artifactId>
      <version>` + Version + `</version>
    </dependency>
  </dependencies>
</project>
`

// Fetch makes sure the jars are in the cache and returns their directory. Concurrent
// callers, in this process or others, fetch once: a lock file serializes them.
func Fetch(ctx context.Context) (string, error) {
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	lib := filepath.Join(dir, "lib")
	done := filepath.Join(dir, "complete")
	if _, err := os.Stat(done); err == nil {
		return lib, nil
	}
	if _, err := exec.LookPath("mvn"); err != nil {
		return "", fmt.Errorf("%w: no mvn on PATH", ErrUnavailable)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("cassandratest: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("cassandratest: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("cassandratest: lock %s: %w", dir, err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(done); err == nil {
		return lib, nil
	}
	if err := os.WriteFile(filepath.Join(dir, "pom.xml"), []byte(pom), 0o644); err != nil {
		return "", fmt.Errorf("cassandratest: %w", err)
	}
	os.RemoveAll(lib)
	cmd := exec.CommandContext(ctx, "mvn", "-q", "-B", "dependency:copy-dependencies",
		"-DincludeScope=runtime", "-DoutputDirectory=lib")
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("cassandratest: mvn fetch of cassandra-all %s: %w\n%s", Version, err, out)
	}
	if err := os.WriteFile(done, nil, 0o644); err != nil {
		return "", fmt.Errorf("cassandratest: %w", err)
	}
	return lib, nil
}

// Available reports whether a Cassandra can be started here, and why not.
func Available() error {
	if _, err := exec.LookPath("java"); err != nil {
		return fmt.Errorf("%w: no java on PATH", ErrUnavailable)
	}
	dir, err := CacheDir()
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return nil
	}
	if _, err := exec.LookPath("mvn"); err != nil {
		return fmt.Errorf("%w: no mvn on PATH and no jars in %s", ErrUnavailable, dir)
	}
	return nil
}

// jvmFlags are the flags of Cassandra 5.0's conf/jvm17-server.options that matter here:
// module access for its internals and Netty, attach to itself, G1.
var jvmFlags = []string{
	"-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError", "-XX:+ParallelRefProcEnabled", "-XX:MaxTenuringThreshold=1", "-XX:G1HeapRegionSize=16m",
	"-Djdk.attach.allowAttachSelf=true",
	"--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
	"--add-exports", "java.management.rmi/com.sun.jmx.remote.internal.rmi=ALL-UNNAMED",
	"--add-exports", "java.rmi/sun.rmi.registry=ALL-UNNAMED",
	"--add-exports", "java.rmi/sun.rmi.server=ALL-UNNAMED",
	"--add-exports", "java.sql/java.sql=ALL-UNNAMED",
	"--add-exports", "java.base/java.lang.ref=ALL-UNNAMED",
	"--add-exports", "jdk.unsupported/sun.misc=ALL-UNNAMED",
	"--add-exports", "jdk.attach/sun.tools.attach=ALL-UNNAMED",
	"--add-opens", "java.base/java.lang.module=ALL-UNNAMED",
	"--add-opens", "java.base/jdk.internal.loader=ALL-UNNAMED",
	"--add-opens", "java.base/jdk.internal.ref=ALL-UNNAMED",
	"--add-opens", "java.base/jdk.internal.reflect=ALL-UNNAMED",
	"--add-opens", "java.base/jdk.internal.math=ALL-UNNAMED",
	"--add-opens", "java.base/jdk.internal.module=ALL-UNNAMED",
	"--add-opens", "java.base/jdk.internal.util.jar=ALL-UNNAMED",
	"--add-opens", "jdk.management/com.sun.management.internal=ALL-UNNAMED",
	"--add-opens", "java.base/sun.nio.ch=ALL-UNNAMED",
	"--add-opens", "java.base/java.io=ALL-UNNAMED",
	"--add-opens", "java.base/java.lang.reflect=ALL-UNNAMED",
	"--add-opens", "java.base/java.lang=ALL-UNNAMED",
	"--add-opens", "java.base/java.util=ALL-UNNAMED",
	"-Dio.netty.tryReflectionSetAccessible=true",
	"-Dio.netty.allocator.useCacheForAllThreads=true",
	"-Dio.netty.allocator.maxOrder=11",
}

// Server is a running Cassandra.
type Server struct {
	dir, lib    string
	cqlPort     int
	storagePort int
	cmd         *exec.Cmd
	exited      chan struct{}
}

// Start fetches the jars if needed and starts Cassandra with its data under dir (a new
// temporary directory when dir is empty), returning once its CQL port accepts
// connections.
func Start(ctx context.Context, dir string) (*Server, error) {
	if err := Available(); err != nil {
		return nil, err
	}
	lib, err := Fetch(ctx)
	if err != nil {
		return nil, err
	}
	if dir == "" {
		if dir, err = os.MkdirTemp("", "guardyn-cassandra-"); err != nil {
			return nil, fmt.Errorf("cassandratest: %w", err)
		}
	}
	ports, err := freePorts(2)
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, lib: lib, cqlPort: ports[0], storagePort: ports[1]}
	if err := s.writeConfig(); err != nil {
		return nil, err
	}
	if err := s.run(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// Addr is the host:port of the CQL port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.cqlPort)) }

// Dir is the directory holding the server's data, configuration and log.
func (s *Server) Dir() string { return s.dir }

// Kill stops Cassandra at once, as a crash would (SIGKILL).
func (s *Server) Kill() error {
	if s.cmd == nil {
		return nil
	}
	s.cmd.Process.Kill()
	<-s.exited
	s.cmd = nil
	return nil
}

// Restart starts a stopped or killed server again on the same data and ports.
func (s *Server) Restart(ctx context.Context) error {
	if s.cmd != nil {
		return errors.New("cassandratest: server still running")
	}
	return s.run(ctx)
}

// Stop shuts Cassandra down (SIGTERM, then SIGKILL after 30 s) and removes its data.
func (s *Server) Stop() error {
	if s.cmd != nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
		}
		s.cmd = nil
	}
	return os.RemoveAll(s.dir)
}

func (s *Server) run(ctx context.Context) error {
	log, err := os.OpenFile(filepath.Join(s.dir, "cassandra.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("cassandratest: %w", err)
	}
	defer log.Close()
	args := append([]string{"-Xms1g", "-Xmx1g", "-Xss512k"}, jvmFlags...)
	args = append(args,
		"-Dcassandra.config=file://"+filepath.Join(s.dir, "cassandra.yaml"),
		"-Dcassandra-foreground=yes",
		"-Dcassandra.storagedir="+s.dir,
		"-Dcassandra.logdir="+s.dir,
		"-Dlogback.configurationFile="+filepath.Join(s.dir, "logback.xml"),
		"-Dcassandra.skip_wait_for_gossip_to_settle=0",
		"-Dcassandra.ring_delay_ms=0",
		"-Dcassandra.superuser_setup_delay_ms=0",
		"-Dcassandra.load_ring_state=false",
		"-Dcassandra.jmx.local.port=0",
		"-cp", filepath.Join(s.lib, "*"),
		"org.apache.cassandra.service.CassandraDaemon")
	cmd := exec.Command("java", args...)
	cmd.Stdout, cmd.Stderr = log, log
	// Die with the process that started it, even if that one is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("cassandratest: start java: %w", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	s.cmd, s.exited = cmd, exited
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		if answers(s.Addr()) {
			return nil
		}
		select {
		case <-exited:
			s.cmd = nil
			return fmt.Errorf("cassandratest: cassandra exited before opening %s; log:\n%s", s.Addr(), tail(filepath.Join(s.dir, "cassandra.log")))
		case <-ctx.Done():
			s.Kill()
			return fmt.Errorf("cassandratest: cassandra did not open %s in %v: %w; log:\n%s", s.Addr(), startTimeout, ctx.Err(), tail(filepath.Join(s.dir, "cassandra.log")))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// answers reports whether a CQL server at addr answers an OPTIONS request (native
// protocol v4) with SUPPORTED: the port opens before the server serves requests.
func answers(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	// version 4 request, no flags, stream 1, opcode OPTIONS (5), empty body.
	if _, err := c.Write([]byte{0x04, 0, 0, 1, 0x05, 0, 0, 0, 0}); err != nil {
		return false
	}
	var hdr [9]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return false
	}
	// response version 4 (0x84), opcode SUPPORTED (6).
	return hdr[0] == 0x84 && hdr[4] == 0x06
}

// tail returns the last lines of a log file, for errors.
func tail(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > 40 {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

func freePorts(n int) ([]int, error) {
	var ports []int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("cassandratest: free port: %w", err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// writeConfig writes a single-node cassandra.yaml: loopback only, no snapshots on
// truncate or drop, and the commit log synced before a write is acknowledged (group
// mode, 2 ms window), so a killed server keeps what it acknowledged.
func (s *Server) writeConfig() error {
	for _, d := range []string{"data", "commitlog", "saved_caches", "hints", "cdc_raw"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o755); err != nil {
			return fmt.Errorf("cassandratest: %w", err)
		}
	}
	yaml := fmt.Sprintf(`cluster_name: guardyn-test
num_tokens: 16
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
data_file_directories: [%[1]s/data]
commitlog_directory: %[1]s/commitlog
saved_caches_directory: %[1]s/saved_caches
hints_directory: %[1]s/hints
cdc_raw_directory: %[1]s/cdc_raw
commitlog_sync: group
commitlog_sync_group_window: 2ms
commitlog_segment_size: 8MiB
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:%[2]d"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: %[2]d
native_transport_port: %[3]d
start_native_transport: true
endpoint_snitch: SimpleSnitch
auto_snapshot: false
snapshot_on_duplicate_row_detection: false
concurrent_reads: 8
concurrent_writes: 8
concurrent_counter_writes: 8
concurrent_compactors: 1
memtable_heap_space: 128MiB
memtable_offheap_space: 128MiB
key_cache_size: 16MiB
read_request_timeout: 10000ms
write_request_timeout: 10000ms
cas_contention_timeout: 5000ms
request_timeout: 20000ms
`, s.dir, s.storagePort, s.cqlPort)
	logback := `<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>` + filepath.Join(s.dir, "system.log") + `</file>
    <encoder><pattern>%-5level %date{ISO8601} %F:%L - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
</configuration>
`
	if err := os.WriteFile(filepath.Join(s.dir, "cassandra.yaml"), []byte(yaml), 0o644); err != nil {
		return fmt.Errorf("cassandratest: %w", err)
	}
	if err := os.WriteFile(filepath.Join(s.dir, "logback.xml"), []byte(logback), 0o644); err != nil {
		return fmt.Errorf("cassandratest: %w", err)
	}
	return nil
}
