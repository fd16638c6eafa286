package mls_test

import (
	"fmt"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
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
	bg, _ := newBenchGroupIDs(b, cs, n)
	return bg
}

// newSteadyBenchGroup is newBenchGroup with every parent node filled, as
// in a group where members have committed before: every other member
// commits an UpdatePath, leaves taken in bit-reversed order so that upper
// parents fill first and each path is encrypted to few nodes.
func newSteadyBenchGroup(b *testing.B, cs mls.CipherSuite, n int) *benchGroup {
	bg, ids := newBenchGroupIDs(b, cs, n)
	half := 1
	for half < n/2 {
		half *= 2
	}
	bits := 0
	for 1<<bits < half {
		bits++
	}
	for k := range half {
		r := 0
		for i := range bits {
			if k&(1<<i) != 0 {
				r |= 1 << (bits - 1 - i)
			}
		}
		leaf := 2*r + 1
		if leaf <= 1 || leaf >= n {
			continue
		}
		commit, err := mls.PuppetCommit(bg.creator.g, uint32(leaf), ids[leaf])
		if err != nil {
			b.Fatal(err)
		}
		for _, m := range []*member{bg.creator, bg.receiver} {
			if _, err := m.g.Process(commit); err != nil {
				b.Fatal(err)
			}
		}
	}
	return bg
}

func newBenchGroupIDs(b *testing.B, cs mls.CipherSuite, n int) (*benchGroup, []*mls.Identity) {
	b.Helper()
	creator := newMember(b, cs, "creator")
	receiver := newMember(b, cs, "receiver")
	var err error
	if creator.g, err = mls.NewGroup(creator.id, []byte("bench"), trustAll); err != nil {
		b.Fatal(err)
	}
	ids := []*mls.Identity{creator.id, receiver.id}
	adds := [][]byte{receiver.kp.Bytes()}
	for i := 2; i < n; i++ {
		m := newMember(b, cs, fmt.Sprint(i))
		ids = append(ids, m.id)
		adds = append(adds, m.kp.Bytes())
	}
	res, err := creator.g.Commit(mls.CommitOptions{Add: adds, UpdatePath: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := creator.g.MergePendingCommit(); err != nil {
		b.Fatal(err)
	}
	tree := creator.g.RatchetTree()
	if receiver.g, err = mls.Join(receiver.kp, res.Welcome, trustAll, &mls.JoinOptions{RatchetTree: tree}); err != nil {
		b.Fatal(err)
	}
	return &benchGroup{creator: creator, receiver: receiver, tree: tree}, ids
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

// benchCipherSuites are measured side by side: the classical suites 2 and 1
// and the post-quantum X-Wing suite, the product default.
var benchCipherSuites = []mls.CipherSuite{mls.P256AES128GCMSHA256P256, mls.X25519AES128GCMSHA256Ed25519, mls.XWingChaCha20Poly1305SHA256Ed25519}

func benchSuites(b *testing.B, f func(b *testing.B, cs mls.CipherSuite, n int)) {
	for _, cs := range benchCipherSuites {
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
			state := mls.Fork(bg.receiver.g)
			for b.Loop() {
				b.StopTimer()
				g := mls.Fork(state)
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
			state := mls.Fork(bg.receiver.g)
			for b.Loop() {
				b.StopTimer()
				g := mls.Fork(state)
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
			state := mls.Fork(bg.receiver.g)
			for b.Loop() {
				b.StopTimer()
				g := mls.Fork(state)
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
			if _, err := mls.Join(joiner.kp, res.Welcome, trustAll, opts); err != nil {
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
	for _, cs := range benchCipherSuites {
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

// BenchmarkBaseline measures the raw primitives the group operations are
// made of, in the same run: a join verifies one signature per member, and a
// commit with a path encrypts to every node of the copath resolutions.
func BenchmarkBaseline(b *testing.B) {
	for _, id := range []suite.ID{suite.P256AES128GCMSHA256P256, suite.X25519AES128GCMSHA256Ed25519, suite.XWingChaCha20Poly1305SHA256Ed25519} {
		s, err := suite.New(id)
		if err != nil {
			b.Fatal(err)
		}
		priv, pub, _ := s.GenerateSignatureKey()
		msg := make([]byte, 200)
		sig, _ := s.SignWithLabel(priv, "LeafNodeTBS", msg)
		b.Run(fmt.Sprintf("suite%d/sign", id), func(b *testing.B) {
			for b.Loop() {
				s.SignWithLabel(priv, "LeafNodeTBS", msg)
			}
		})
		b.Run(fmt.Sprintf("suite%d/verify", id), func(b *testing.B) {
			for b.Loop() {
				if err := s.VerifyWithLabel(pub, "LeafNodeTBS", msg, sig); err != nil {
					b.Fatal(err)
				}
			}
		})
		_, hpub, _ := s.DeriveKeyPair(make([]byte, 32))
		b.Run(fmt.Sprintf("suite%d/hpke-seal", id), func(b *testing.B) {
			for b.Loop() {
				if _, _, err := s.EncryptWithLabel(hpub, "UpdatePathNode", msg, msg[:32]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSteadyCommit measures remove and update commits, and their
// processing, in a group whose parents are all filled.
func BenchmarkSteadyCommit(b *testing.B) {
	for _, cs := range benchCipherSuites {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("suite%d/n=%d", cs, n), func(b *testing.B) {
				bg := newSteadyBenchGroup(b, cs, n)
				for _, op := range []struct {
					name string
					opts mls.CommitOptions
				}{{"remove", mls.CommitOptions{Remove: []uint32{uint32(n - 1)}}}, {"update", mls.CommitOptions{UpdatePath: true}}} {
					var res *mls.CommitResult
					b.Run(op.name+"/create", func(b *testing.B) {
						var cpu cpuMeter
						for b.Loop() {
							bg.creator.g.DiscardPendingCommit()
							cpu.begin()
							var err error
							if res, err = bg.creator.g.Commit(op.opts); err != nil {
								b.Fatal(err)
							}
							cpu.end()
						}
						cpu.report(b)
					})
					b.Run(op.name+"/process", func(b *testing.B) {
						var cpu cpuMeter
						state := mls.Fork(bg.receiver.g)
						for b.Loop() {
							b.StopTimer()
							g := mls.Fork(state)
							b.StartTimer()
							cpu.begin()
							if _, err := g.Process(res.Commit); err != nil {
								b.Fatal(err)
							}
							cpu.end()
						}
						cpu.report(b)
					})
				}
			})
		}
	}
}
