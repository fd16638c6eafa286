package media_test

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	mediav1 "github.com/guardyn/guardyn/proto/guardyn/media/v1"
	"github.com/guardyn/guardyn/services/media"
)

// The media benchmarks run beside their ceilings on the same machine, in the same run:
// AES-256-GCM over 1 MiB (what a client spends encrypting), SHA-256 (what completing an
// upload spends) and a 1 MiB write + fsync per chunk to the same disk (what the embedded
// blob store spends acknowledging a chunk). Upload and Download go through the service
// over real gRPC on loopback: `go test -run '^$' -bench . ./services/media`.

const benchBlob = 64 << 20

func BenchmarkAESGCM1MiB(b *testing.B) {
	block, _ := aes.NewCipher(make([]byte, 32))
	gcm, _ := cipher.NewGCM(block)
	buf := make([]byte, 1<<20, 1<<20+16)
	nonce := make([]byte, 12)
	b.SetBytes(1 << 20)
	for b.Loop() {
		gcm.Seal(buf[:0], nonce, buf[:1<<20], nil)
	}
}

func BenchmarkSHA256(b *testing.B) {
	buf := make([]byte, 1<<20)
	b.SetBytes(1 << 20)
	for b.Loop() {
		sha256.Sum256(buf)
	}
}

// BenchmarkDiskWriteSync appends 1 MiB chunks to one file with an fsync after each, as the
// embedded blob store does, in the same temporary directory tree the service uses.
func BenchmarkDiskWriteSync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "disk"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	b.SetBytes(1 << 20)
	off := int64(0)
	for b.Loop() {
		if _, err := f.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			b.Fatal(err)
		}
		off += 1 << 20
		if off >= 256<<20 {
			f.Truncate(0)
			off = 0
		}
	}
}

// BenchmarkUpload creates, streams (1 MiB chunks) and completes a 64 MiB upload per op,
// syncing every chunk (as the first version did) and every 16 MiB (the default).
func BenchmarkUpload(b *testing.B) {
	for _, every := range []struct {
		name  string
		bytes int
	}{{"sync=chunk", 1}, {"sync=16MiB", media.DefaultSyncEvery}} {
		b.Run(every.name, func(b *testing.B) {
			e := newEnv(b, func(c *media.Config) { c.StorageQuota, c.DailyQuota, c.SyncEvery = 1<<50, 1<<50, every.bytes })
			alice := e.as(b, "alice")
			body := data(benchBlob, 1)
			b.SetBytes(benchBlob)
			defer cpuPerByte(b, benchBlob)()
			i := 0
			for b.Loop() {
				body[0] = byte(i) // a new blob each time
				i++
				blob := e.upload(b, alice, body)
				b.StopTimer()
				if _, err := e.client.DeleteBlob(alice, &mediav1.DeleteBlobRequest{BlobId: blob}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
		})
	}
}

// BenchmarkDownload streams a 64 MiB blob per op.
func BenchmarkDownload(b *testing.B) {
	e := newEnv(b, nil)
	alice := e.as(b, "alice")
	blob := e.upload(b, alice, data(benchBlob, 2))
	b.SetBytes(benchBlob)
	defer cpuPerByte(b, benchBlob)()
	for b.Loop() {
		stream, err := e.client.Download(alice, &mediav1.DownloadRequest{BlobId: blob})
		if err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			resp, err := stream.Recv()
			if err != nil {
				break
			}
			n += len(resp.GetData())
		}
		if n != benchBlob {
			b.Fatalf("downloaded %d bytes", n)
		}
	}
}

// BenchmarkLoopbackTCP copies 1 MiB buffers over a loopback TCP connection: the transport
// ceiling of Upload and Download on this machine, without gRPC.
func BenchmarkLoopbackTCP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(io.Discard, c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 1<<20)
	b.SetBytes(1 << 20)
	for b.Loop() {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
}

// cpuPerByte reports, when the returned function runs, MB moved per CPU second of this
// process (client and server together): on a machine shared with other load the wall-clock
// rate shows the share of the CPU the benchmark got, this the cost of the work itself.
func cpuPerByte(b *testing.B, perOp int) func() {
	start := cpuTime()
	return func() {
		if used := cpuTime() - start; used > 0 {
			b.ReportMetric(float64(perOp)*float64(b.N)/used.Seconds()/1e6, "MB/cpu-s")
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
