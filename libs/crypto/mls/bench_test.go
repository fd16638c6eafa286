package mls_test

import (
	"fmt"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls"
)

// benchGroup is a group of n members as a creator builds it: one commit
// adds everyone and refreshes the creator's path. The creator (leaf 0) and
// one receiver (leaf 1) hold state; the others exist as leaves. Parents off
// the creator's path are blank, as in any freshly built group.
type benchGroup struct {
	creator, receiver *member
	tree              []byte
}

func newBenchGroup(b *testing.B, cs mls.CipherSuite, n int) *benchGroup {
	b.Helper()
	creator := newMember(b, cs, "creator")
	receiver := newMember(b, cs, "receiver")
	var err error
	if creator.g, err = mls.NewGroup(creator.id, []byte("bench")); err != nil {
		b.Fatal(err)
	}
	adds := [][]byte{receiver.kp.Bytes()}
	for i := 2; i < n; i++ {
		adds = append(adds, newMember(b, cs, fmt.Sprint(i)).kp.Bytes())
	}
	res, err := creator.g.Commit(mls.CommitOptions{Add: adds, UpdatePath: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := creator.g.MergePendingCommit(); err != nil {
		b.Fatal(err)
	}
	tree := creator.g.RatchetTree()
	if receiver.g, err = mls.Join(receiver.kp, res.Welcome, &mls.JoinOptions{RatchetTree: tree}); err != nil {
		b.Fatal(err)
	}
	return &benchGroup{creator: creator, receiver: receiver, tree: tree}
}

// cpuMeter sums the process CPU time spent in timed sections. On a shared
// machine wall time per op swings with other load; CPU time per op does not
// (it counts every core this process used, so parallel work shows in full).
type cpuMeter struct{ total, start int64 }

func (m *cpuMeter) begin() { m.start = processCPU() }
func (m *cpuMeter) end()   { m.total += processCPU() - m.start }
func (m *cpuMeter) report(b *testing.B) {
	b.ReportMetric(float64(m.total)/float64(b.N), "cpu-ns/op")
}

var benchSizes = []int{10, 100, 1000, 10000}

func benchSuites(b *testing.B, f func(b *testing.B, cs mls.CipherSuite, n int)) {
	for _, cs := range []mls.CipherSuite{mls.P256AES128GCMSHA256P256, mls.X25519AES128GCMSHA256Ed25519} {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("suite%d/n=%d", cs, n), func(b *testing.B) { f(b, cs, n) })
		}
	}
}

// BenchmarkCommitAdd measures creating a commit that adds one member
// (Welcome included) and, separately, processing it on another member.
func BenchmarkCommitAdd(b *testing.B) {
	benchSuites(b, func(b *testing.B, cs mls.CipherSuite, n int) {
		bg := newBenchGroup(b, cs, n)
		kps := make([][]byte, 0, 64)
		var res *mls.CommitResult
		b.Run("create", func(b *testing.B) {
			var cpu cpuMeter
			for b.Loop() {
				b.StopTimer()
				if len(kps) == 0 {
					for range 64 {
						kps = append(kps, newMember(b, cs, "new").kp.Bytes())
					}
				}
				kp := kps[len(kps)-1]
				kps = kps[:len(kps)-1]
				bg.creator.g.DiscardPendingCommit()
				b.StartTimer()
				cpu.begin()
				var err error
				if res, err = bg.creator.g.Commit(mls.CommitOptions{Add: [][]byte{kp}}); err != nil {
					b.Fatal(err)
				}
				cpu.end()
			}
			cpu.report(b)
		})
		b.Run("process", func(b *testing.B) {
			var cpu cpuMeter
			state := bg.receiver.g.Clone()
			for b.Loop() {
				b.StopTimer()
				g := state.Clone()
				b.StartTimer()
				cpu.begin()
				if _, err := g.Process(res.Commit); err != nil {
					b.Fatal(err)
				}
				cpu.end()
			}
			cpu.report(b)
		})
	})
}

// BenchmarkCommitRemove measures a commit removing one member (an
// UpdatePath is required) and its processing.
func BenchmarkCommitRemove(b *testing.B) {
	benchSuites(b, func(b *testing.B, cs mls.CipherSuite, n int) {
		bg := newBenchGroup(b, cs, n)
		var res *mls.CommitResult
		b.Run("create", func(b *testing.B) {
			var cpu cpuMeter
			for b.Loop() {
				bg.creator.g.DiscardPendingCommit()
				cpu.begin()
				var err error
				if res, err = bg.creator.g.Commit(mls.CommitOptions{Remove: []uint32{uint32(n - 1)}}); err != nil {
					b.Fatal(err)
				}
				cpu.end()
			}
			cpu.report(b)
		})
		b.Run("process", func(b *testing.B) {
			var cpu cpuMeter
			state := bg.receiver.g.Clone()
			for b.Loop() {
				b.StopTimer()
				g := state.Clone()
				b.StartTimer()
				cpu.begin()
				if _, err := g.Process(res.Commit); err != nil {
					b.Fatal(err)
				}
				cpu.end()
			}
			cpu.report(b)
		})
	})
}

// BenchmarkCommitUpdate measures an empty commit with an UpdatePath from
// the creator, and its processing.
func BenchmarkCommitUpdate(b *testing.B) {
	benchSuites(b, func(b *testing.B, cs mls.CipherSuite, n int) {
		bg := newBenchGroup(b, cs, n)
		var res *mls.CommitResult
		b.Run("create", func(b *testing.B) {
			var cpu cpuMeter
			for b.Loop() {
				bg.creator.g.DiscardPendingCommit()
				cpu.begin()
				var err error
				if res, err = bg.creator.g.Commit(mls.CommitOptions{UpdatePath: true}); err != nil {
					b.Fatal(err)
				}
				cpu.end()
			}
			cpu.report(b)
		})
		b.Run("process", func(b *testing.B) {
			var cpu cpuMeter
			state := bg.receiver.g.Clone()
			for b.Loop() {
				b.StopTimer()
				g := state.Clone()
				b.StartTimer()
				cpu.begin()
				if _, err := g.Process(res.Commit); err != nil {
					b.Fatal(err)
				}
				cpu.end()
			}
			cpu.report(b)
		})
	})
}

// BenchmarkJoin measures joining from a Welcome with the tree supplied
// (every leaf signature and parent hash verified).
func BenchmarkJoin(b *testing.B) {
	benchSuites(b, func(b *testing.B, cs mls.CipherSuite, n int) {
		bg := newBenchGroup(b, cs, n)
		joiner := newMember(b, cs, "joiner")
		res, err := bg.creator.g.Commit(mls.CommitOptions{Add: [][]byte{joiner.kp.Bytes()}})
		if err != nil {
			b.Fatal(err)
		}
		if err := bg.creator.g.MergePendingCommit(); err != nil {
			b.Fatal(err)
		}
		opts := &mls.JoinOptions{RatchetTree: bg.creator.g.RatchetTree()}
		var cpu cpuMeter
		for b.Loop() {
			cpu.begin()
			if _, err := mls.Join(joiner.kp, res.Welcome, opts); err != nil {
				b.Fatal(err)
			}
			cpu.end()
		}
		cpu.report(b)
		state, err := bg.creator.g.MarshalState()
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(len(state))/float64(n), "state-B/member")
	})
}

// BenchmarkApplication measures protecting and unprotecting 1 KiB.
func BenchmarkApplication(b *testing.B) {
	for _, cs := range []mls.CipherSuite{mls.P256AES128GCMSHA256P256, mls.X25519AES128GCMSHA256Ed25519} {
		b.Run(fmt.Sprintf("suite%d", cs), func(b *testing.B) {
			bg := newBenchGroup(b, cs, 10)
			data := make([]byte, 1024)
			b.SetBytes(int64(len(data)))
			start := processCPU()
			for b.Loop() {
				msg, err := bg.creator.g.ProtectApplication(data, nil)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := bg.receiver.g.Process(msg); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(processCPU()-start)/float64(b.N), "cpu-ns/op")
		})
	}
}
