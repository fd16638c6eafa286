package kvtest

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/guardyn/guardyn/libs/kv"
)

// Benchmark measures the store open returns: durable Updates from 1, 16 and 64
// concurrent writers (where group commit shows) and point reads. Each reports ops/s.
func Benchmark(b *testing.B, open Opener) {
	value := make([]byte, 200)
	for _, writers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("Update/writers=%d", writers), func(b *testing.B) {
			s := openClosed(b, open)
			Parallel(b, writers, func(i int) error {
				key := binary.BigEndian.AppendUint32([]byte("bench/"), uint32(i))
				return s.Update(context.Background(), func(tx kv.Tx) error {
					return tx.Put(key, value)
				})
			})
		})
	}
	b.Run("Get", func(b *testing.B) {
		s := openClosed(b, open)
		const keys = 100_000
		if err := s.Update(context.Background(), func(tx kv.Tx) error {
			for i := range keys {
				if err := tx.Put(binary.BigEndian.AppendUint32([]byte("bench/"), uint32(i)), value); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		Parallel(b, 2, func(i int) error {
			key := binary.BigEndian.AppendUint32([]byte("bench/"), uint32(i*7919%keys))
			return s.View(context.Background(), func(tx kv.Tx) error {
				_, err := tx.Get(key)
				return err
			})
		})
	})
}

// Parallel runs op b.N times, numbered 0 to b.N-1, from exactly workers goroutines, and
// reports the rate as ops/s. Unlike b.RunParallel the number of goroutines does not
// depend on GOMAXPROCS, so results compare across machines.
func Parallel(b *testing.B, workers int, op func(i int) error) {
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
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}
