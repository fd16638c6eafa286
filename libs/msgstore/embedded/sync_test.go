package embedded

import (
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkFsync is the raw baseline on the same disk: one 4 KiB write made durable per
// op, what a store without group commit pays per message. "append" grows the file and
// fsyncs, as a plain log does; "prealloc" overwrites a zero-filled file and uses
// datasync, as the segments do.
func BenchmarkFsync(b *testing.B) {
	page := make([]byte, 4096)
	b.Run("append", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "fsync"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		for b.Loop() {
			if _, err := f.Write(page); err != nil {
				b.Fatal(err)
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fsync/s")
	})
	b.Run("prealloc", func(b *testing.B) {
		seg, err := createSegment(b.TempDir(), 1, 1, 64<<20)
		if err != nil {
			b.Fatal(err)
		}
		defer seg.f.Close()
		off := int64(segmentHeaderSize)
		for b.Loop() {
			if off+int64(len(page)) > seg.alloc {
				off = segmentHeaderSize
			}
			if _, err := seg.f.WriteAt(page, off); err != nil {
				b.Fatal(err)
			}
			off += int64(len(page))
			if err := datasync(seg.f); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "fsync/s")
	})
}
