package msgstoretest

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/msgstore"
)

// benchInboxes is how many recipient devices the benchmarks spread messages over.
const benchInboxes = 64

func benchInbox(n int) msgstore.Inbox {
	return msgstore.Inbox{UserID: fmt.Sprintf("user-%02d", n%benchInboxes), DeviceID: "device"}
}

func benchMessage(n int, body []byte) msgstore.Message {
	var id msgstore.ID
	binary.BigEndian.PutUint64(id[:], uint64(n))
	binary.BigEndian.PutUint64(id[8:], uint64(n)*0x9e3779b97f4a7c15)
	now := time.Now()
	return msgstore.Message{Inbox: benchInbox(n), ID: id, Kind: 1, Body: body, Timestamp: now, Expiry: now.Add(30 * 24 * time.Hour)}
}

// Benchmark measures the store open returns and reports msg/s: durable single-message
// Appends from 1, 16, 64 and 256 concurrent appenders with 200 B and 1 KiB bodies, Append
// followed by its acknowledgement Delete (the store's share of the send path), paged
// Reads and Deletes.
func Benchmark(b *testing.B, open Opener) {
	for _, size := range []int{200, 1024} {
		for _, appenders := range []int{1, 16, 64, 256} {
			b.Run(fmt.Sprintf("Append/body=%d/appenders=%d", size, appenders), func(b *testing.B) {
				s := openForBench(b, open)
				body := make([]byte, size)
				b.SetBytes(int64(size))
				Parallel(b, appenders, 1, func(i int) error {
					return s.Append(context.Background(), []msgstore.Message{benchMessage(i, body)})
				})
			})
		}
	}
	b.Run("AppendAck/body=200/appenders=64", func(b *testing.B) {
		s := openForBench(b, open)
		body := make([]byte, 200)
		Parallel(b, 64, 1, func(i int) error {
			m := benchMessage(i, body)
			if err := s.Append(context.Background(), []msgstore.Message{m}); err != nil {
				return err
			}
			return s.Delete(context.Background(), m.Inbox, []msgstore.ID{m.ID})
		})
	})
	b.Run("Read/limit=100", func(b *testing.B) {
		s := openForBench(b, open)
		fill(b, s, 0, 100*benchInboxes, 200)
		Parallel(b, 2, 100, func(i int) error {
			msgs, err := s.Read(context.Background(), benchInbox(i), nil, 100, msgstore.MaxReadBytes)
			if err == nil && len(msgs) != 100 {
				err = fmt.Errorf("read %d messages, want 100", len(msgs))
			}
			return err
		})
	})
	b.Run("Delete/ackers=16", func(b *testing.B) {
		s := openForBench(b, open)
		// Deletes need messages to delete: fill in chunks outside the timer.
		const chunk = 20_000
		var next atomic.Int64
		b.ResetTimer()
		for done := 0; done < b.N; done += chunk {
			n := min(chunk, b.N-done)
			b.StopTimer()
			fill(b, s, done, n, 200)
			b.StartTimer()
			var wg sync.WaitGroup
			for range 16 {
				wg.Go(func() {
					for {
						i := int(next.Add(1) - 1)
						if i >= done+n {
							return
						}
						m := benchMessage(i, nil)
						if err := s.Delete(context.Background(), m.Inbox, []msgstore.ID{m.ID}); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
		}
		b.StopTimer()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
	})
}

func openForBench(b *testing.B, open Opener) msgstore.Store {
	s := open(b, b.TempDir(), time.Now)
	b.Cleanup(func() { s.Close() })
	return s
}

// fill appends messages from to from+n-1 in batches.
func fill(tb testing.TB, s msgstore.Store, from, n, size int) {
	body := make([]byte, size)
	batch := make([]msgstore.Message, 0, 1000)
	for i := from; i < from+n; i++ {
		batch = append(batch, benchMessage(i, body))
		if len(batch) == cap(batch) || i == from+n-1 {
			if err := s.Append(context.Background(), batch); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
}

// Parallel runs op b.N times, numbered 0 to b.N-1, from exactly workers goroutines and
// reports msg/s, counting perOp messages per op. Unlike b.RunParallel the number of
// goroutines does not depend on GOMAXPROCS.
func Parallel(b *testing.B, workers, perOp int, op func(i int) error) {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range workers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				if err := op(int(i)); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N*perOp)/b.Elapsed().Seconds(), "msg/s")
}
