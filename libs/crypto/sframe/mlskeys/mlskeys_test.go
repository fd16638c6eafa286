package mlskeys

import (
	"bytes"
	"crypto"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/sframe"
	"github.com/guardyn/guardyn/libs/crypto/sframe/mlskeys/mlskeystest"
)

var _ Group = (*mlskeystest.Group)(nil)

func TestIndexBits(t *testing.T) {
	for _, tc := range []struct {
		leaves uint32
		want   int
	}{{1, 1}, {2, 2}, {3, 2}, {4, 3}, {255, 8}, {256, 9}, {math.MaxUint32, 32}} {
		if got := IndexBits(tc.leaves); got != tc.want {
			t.Errorf("IndexBits(%d) = %d, want %d", tc.leaves, got, tc.want)
		}
	}
}

func TestKeyID(t *testing.T) {
	for _, tc := range []struct {
		context       uint64
		sender        uint32
		epoch         uint64
		e, s          int
		want          uint64
		wantErrLayout bool
	}{
		{0, 0, 0, 4, 3, 0, false},
		{5, 6, 0x1234, 4, 3, 5<<7 | 6<<4 | 4, false},
		{0, 2, 261, 4, 3, 37, false},
		{0, math.MaxUint32, math.MaxUint64, 32, 32, math.MaxUint64, false},
		{1, 0, 0, 32, 32, 0, true},     // no bits left for a context
		{1 << 57, 0, 0, 4, 3, 0, true}, // context wider than 57 bits
		{1<<57 - 1, 1, 1, 4, 3, math.MaxUint64 &^ (6 << 4) &^ 14, false},
		{0, 8, 0, 4, 3, 0, true},   // sender index wider than S
		{0, 0, 0, 0, 3, 0, true},   // E must be at least 1
		{0, 0, 0, 40, 30, 0, true}, // E + S > 64
	} {
		got, err := KeyID(tc.context, tc.sender, tc.epoch, tc.e, tc.s)
		if tc.wantErrLayout {
			if !errors.Is(err, ErrBadLayout) {
				t.Errorf("KeyID(%d, %d, %d, %d, %d) = %d, %v; want ErrBadLayout", tc.context, tc.sender, tc.epoch, tc.e, tc.s, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("KeyID(%d, %d, %d, %d, %d) = %#x, %v; want %#x", tc.context, tc.sender, tc.epoch, tc.e, tc.s, got, err, tc.want)
		}
	}
}

// TestFrozenVectors checks the base key and KID against values computed
// independently (testdata/gen_frozen.py), and the first frame against a
// frozen ciphertext.
func TestFrozenVectors(t *testing.T) {
	raw, err := os.ReadFile("testdata/frozen.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		CipherSuite    sframe.CipherSuite `json:"cipher_suite"`
		ExporterSecret string             `json:"exporter_secret"`
		Epoch          uint64             `json:"epoch"`
		LeafIndex      uint32             `json:"leaf_index"`
		LeafCount      uint32             `json:"leaf_count"`
		EpochBits      int                `json:"epoch_bits"`
		IndexBits      int                `json:"index_bits"`
		KID            uint64             `json:"kid"`
		BaseKey        string             `json:"base_key"`
		Metadata       string             `json:"metadata"`
		PT             string             `json:"pt"`
		CT             string             `json:"ct"`
	}
	if err := json.Unmarshal(raw, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) != 9 {
		t.Fatalf("%d frozen cases, want 9", len(cases))
	}
	for _, tc := range cases {
		g := mlskeystest.NewGroup(crypto.SHA256, mustHex(t, tc.ExporterSecret), tc.Epoch, tc.LeafIndex, tc.LeafCount)
		baseKey, err := g.Export(ExporterLabel, nil, tc.CipherSuite.KeySize())
		if err != nil || !bytes.Equal(baseKey, mustHex(t, tc.BaseKey)) {
			t.Errorf("%v epoch %d: base key %x, %v; want %s", tc.CipherSuite, tc.Epoch, baseKey, err, tc.BaseKey)
		}
		if IndexBits(tc.LeafCount) != tc.IndexBits {
			t.Errorf("IndexBits(%d) = %d, want %d", tc.LeafCount, IndexBits(tc.LeafCount), tc.IndexBits)
		}
		k, err := NewKeyring(tc.CipherSuite, tc.EpochBits, time.Second, 64, nil, mlskeystest.NewCounterStore())
		if err != nil {
			t.Fatal(err)
		}
		if err := k.SetEpoch(g); err != nil {
			t.Fatal(err)
		}
		if kid, _ := k.KeyID(0); kid != tc.KID {
			t.Errorf("%v epoch %d leaf %d: KID %d, want %d", tc.CipherSuite, tc.Epoch, tc.LeafIndex, kid, tc.KID)
		}
		frame, err := k.Protect(0, nil, mustHex(t, tc.Metadata), mustHex(t, tc.PT))
		if err != nil || hex.EncodeToString(frame) != tc.CT {
			t.Errorf("%v epoch %d: first frame %x, %v; want %s", tc.CipherSuite, tc.Epoch, frame, err, tc.CT)
		}
		// A plain SFrame receiver given the vector's KID and base key reads it.
		r, _ := sframe.NewReceiver(tc.CipherSuite, 64)
		if err := r.AddKey(tc.KID, mustHex(t, tc.BaseKey)); err != nil {
			t.Fatal(err)
		}
		if pt, err := r.Unprotect(nil, mustHex(t, tc.Metadata), frame); err != nil || hex.EncodeToString(pt) != tc.PT {
			t.Errorf("%v epoch %d: plain receiver: %x, %v", tc.CipherSuite, tc.Epoch, pt, err)
		}
	}
}

// call is a group of members, each with its own keyring, sharing one clock.
type call struct {
	t       *testing.T
	clock   time.Time
	group   *mlskeystest.Group
	members []*Keyring
}

func newCall(t *testing.T, members int, epochBits int, grace time.Duration) *call {
	t.Helper()
	c := &call{t: t, clock: time.Unix(1_700_000_000, 0)}
	c.group = mlskeystest.NewGroup(crypto.SHA256, bytes.Repeat([]byte{0x42}, 32), 1, 0, uint32(members))
	for i := range members {
		k, err := NewKeyring(sframe.AES_128_GCM_SHA256_128, epochBits, grace, 128, func() time.Time { return c.clock }, mlskeystest.NewCounterStore())
		if err != nil {
			t.Fatal(err)
		}
		if err := k.SetEpoch(c.group.As(uint32(i))); err != nil {
			t.Fatal(err)
		}
		c.members = append(c.members, k)
	}
	return c
}

// advance moves the group and every member to the next epoch.
func (c *call) advance() {
	c.t.Helper()
	next, err := c.group.Advance(0, uint32(len(c.members)))
	if err != nil {
		c.t.Fatal(err)
	}
	c.group = next
	for i, k := range c.members {
		if err := k.SetEpoch(next.As(uint32(i))); err != nil {
			c.t.Fatal(err)
		}
	}
}

func (c *call) send(from int, msg string) []byte {
	c.t.Helper()
	f, err := c.members[from].Protect(0, nil, []byte("md"), []byte(msg))
	if err != nil {
		c.t.Fatal(err)
	}
	return f
}

func (c *call) mustRead(to int, frame []byte, want string) {
	c.t.Helper()
	pt, err := c.members[to].Unprotect(nil, []byte("md"), frame)
	if err != nil || string(pt) != want {
		c.t.Fatalf("member %d read %q, %v; want %q", to, pt, err, want)
	}
}

func TestMembersReadEachOther(t *testing.T) {
	c := newCall(t, 3, 4, time.Second)
	kids := map[uint64]bool{}
	for i, k := range c.members {
		kid, err := k.KeyID(0)
		if err != nil {
			t.Fatal(err)
		}
		kids[kid] = true
		for j := range c.members {
			if i != j {
				c.mustRead(j, c.send(i, "hi"), "hi")
			}
		}
	}
	if len(kids) != 3 {
		t.Errorf("members share KIDs: %v", kids)
	}
	f := c.send(0, "again")
	c.mustRead(1, f, "again")
	if _, err := c.members[1].Unprotect(nil, []byte("md"), f); !errors.Is(err, sframe.ErrReplayed) {
		t.Errorf("replay through keyring: %v, want ErrReplayed", err)
	}
}

func TestPreviousEpochGracePeriod(t *testing.T) {
	c := newCall(t, 3, 4, 2*time.Second)
	c.mustRead(1, c.send(0, "early"), "early")
	inflight := c.send(0, "in flight") // epoch 1, delivered after the roll
	fromNew := c.send(2, "member 2")   // epoch 1, a KID member 1 has not seen
	expired := c.send(0, "too late")
	prevKID, _ := c.members[0].KeyID(0)

	c.advance()
	c.clock = c.clock.Add(time.Second)
	c.mustRead(1, inflight, "in flight")
	c.mustRead(1, fromNew, "member 2")
	c.mustRead(1, c.send(0, "epoch 2"), "epoch 2")

	c.clock = c.clock.Add(time.Second) // grace is over
	if _, err := c.members[1].Unprotect(nil, []byte("md"), expired); !errors.Is(err, ErrEpochExpired) {
		t.Fatalf("after grace: %v, want ErrEpochExpired", err)
	}
	if c.members[1].receiver.HasKey(prevKID) {
		t.Error("expired epoch's key still installed")
	}
	if _, err := c.members[1].Unprotect(nil, []byte("md"), expired); !errors.Is(err, ErrUnknownEpoch) {
		t.Errorf("after drop: %v, want ErrUnknownEpoch", err)
	}
	c.mustRead(1, c.send(2, "still fine"), "still fine")
}

func TestZeroGraceDropsPreviousEpoch(t *testing.T) {
	c := newCall(t, 2, 4, 0)
	f := c.send(0, "old")
	c.advance()
	if _, err := c.members[1].Unprotect(nil, []byte("md"), f); !errors.Is(err, ErrUnknownEpoch) {
		t.Errorf("previous epoch with no grace: %v, want ErrUnknownEpoch", err)
	}
}

func TestOnlyOnePreviousEpochKept(t *testing.T) {
	c := newCall(t, 2, 4, time.Hour)
	f1 := c.send(0, "epoch 1")
	c.advance()
	f2 := c.send(0, "epoch 2")
	c.advance()
	if _, err := c.members[1].Unprotect(nil, []byte("md"), f1); !errors.Is(err, ErrUnknownEpoch) {
		t.Errorf("two epochs back: %v, want ErrUnknownEpoch", err)
	}
	c.mustRead(1, f2, "epoch 2")
}

func TestEpochBitsCollisionDropsOldEpoch(t *testing.T) {
	// With E = 1, epochs 1 and 3 share their low bit: RFC 9605 requires the
	// old one to go when the new one arrives, grace or not.
	c := newCall(t, 2, 1, time.Hour)
	f1 := c.send(0, "epoch 1")
	g3 := mlskeystest.NewGroup(crypto.SHA256, bytes.Repeat([]byte{0x33}, 32), 3, 0, 2)
	for i, k := range c.members {
		if err := k.SetEpoch(g3.As(uint32(i))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.members[1].Unprotect(nil, []byte("md"), f1); !errors.Is(err, sframe.ErrAuthentication) && !errors.Is(err, ErrUnknownEpoch) {
		t.Errorf("frame of a replaced epoch: %v, want a rejection", err)
	}
	if c.members[1].previous != nil {
		t.Error("colliding previous epoch kept")
	}
	c.mustRead(1, c.send(0, "epoch 3"), "epoch 3")
}

func TestFrameFromFutureEpoch(t *testing.T) {
	c := newCall(t, 2, 4, time.Hour)
	next, err := c.group.Advance(0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.members[0].SetEpoch(next); err != nil {
		t.Fatal(err)
	}
	if _, err := c.members[1].Unprotect(nil, []byte("md"), c.send(0, "ahead")); !errors.Is(err, ErrUnknownEpoch) {
		t.Errorf("frame from an epoch not yet set: %v, want ErrUnknownEpoch", err)
	}
}

func TestSetEpochRefusesStaleEpoch(t *testing.T) {
	c := newCall(t, 2, 4, time.Hour)
	if err := c.members[0].SetEpoch(c.group); !errors.Is(err, ErrStaleEpoch) {
		t.Errorf("same epoch twice: %v, want ErrStaleEpoch", err)
	}
	old := mlskeystest.NewGroup(crypto.SHA256, bytes.Repeat([]byte{1}, 32), 0, 0, 2)
	if err := c.members[0].SetEpoch(old); !errors.Is(err, ErrStaleEpoch) {
		t.Errorf("older epoch: %v, want ErrStaleEpoch", err)
	}
	// The refused calls left the keyring working.
	c.mustRead(1, c.send(0, "ok"), "ok")
}

func TestForgedKeyIDLeavesNoKey(t *testing.T) {
	c := newCall(t, 3, 4, time.Hour)
	f := c.send(0, "x")
	h, n, err := sframe.ParseHeader(f)
	if err != nil {
		t.Fatal(err)
	}
	kid2, _ := c.members[2].KeyID(0)
	h.KeyID = kid2
	forged := append(h.Append(nil), f[n:]...)
	if _, err := c.members[1].Unprotect(nil, []byte("md"), forged); !errors.Is(err, sframe.ErrAuthentication) {
		t.Fatalf("forged KID: %v, want ErrAuthentication", err)
	}
	if c.members[1].receiver.HasKey(kid2) || len(c.members[1].current.kids) != 0 {
		t.Error("forged frame left a key behind")
	}
	c.mustRead(1, c.send(2, "real"), "real")
}

func TestKeyIDOutsideTree(t *testing.T) {
	c := newCall(t, 3, 4, time.Hour) // S = 2: leaf 3 fits the bits, not the tree
	kid, err := KeyID(0, 3, 1, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	frame := append(sframe.Header{KeyID: kid}.Append(nil), make([]byte, 32)...)
	if _, err := c.members[0].Unprotect(nil, nil, frame); !errors.Is(err, sframe.ErrUnknownKeyID) {
		t.Errorf("leaf outside the tree: %v, want ErrUnknownKeyID", err)
	}
	if _, err := c.members[0].Unprotect(nil, nil, []byte{0x80}); !errors.Is(err, sframe.ErrTruncated) {
		t.Errorf("truncated header: %v, want ErrTruncated", err)
	}
}

func TestTooManyKeysPerEpoch(t *testing.T) {
	c := newCall(t, 2, 4, time.Hour)
	suite := sframe.AES_128_GCM_SHA256_128
	baseKey, err := c.group.Export(ExporterLabel, nil, suite.KeySize())
	if err != nil {
		t.Fatal(err)
	}
	// Member 0 opens streams under many contexts; member 1 derives a key
	// for each until the bound.
	for ctx := uint64(0); ctx <= MaxKeysPerEpoch; ctx++ {
		kid, err := KeyID(ctx, 0, c.group.Epoch(), 4, IndexBits(2))
		if err != nil {
			t.Fatal(err)
		}
		s, err := sframe.NewSender(suite, kid, baseKey)
		if err != nil {
			t.Fatal(err)
		}
		f, _ := s.Protect(nil, nil, []byte("x"))
		_, err = c.members[1].Unprotect(nil, nil, f)
		if ctx < MaxKeysPerEpoch && err != nil {
			t.Fatalf("context %d: %v", ctx, err)
		}
		if ctx == MaxKeysPerEpoch && !errors.Is(err, ErrTooManyKeys) {
			t.Fatalf("key %d: %v, want ErrTooManyKeys", ctx+1, err)
		}
	}
}

func TestNoEpochYet(t *testing.T) {
	k, err := NewKeyring(sframe.AES_128_GCM_SHA256_128, 4, time.Second, 64, nil, mlskeystest.NewCounterStore())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := k.Protect(0, nil, nil, []byte("x")); !errors.Is(err, ErrNoEpoch) {
		t.Errorf("Protect: %v, want ErrNoEpoch", err)
	}
	if _, err := k.KeyID(0); !errors.Is(err, ErrNoEpoch) {
		t.Errorf("KeyID: %v, want ErrNoEpoch", err)
	}
	if _, ok := k.Epoch(); ok {
		t.Error("Epoch reports an epoch")
	}
	if _, err := k.Unprotect(nil, nil, []byte{0x00, 1, 2, 3}); !errors.Is(err, ErrUnknownEpoch) {
		t.Errorf("Unprotect: %v, want ErrUnknownEpoch", err)
	}
}

func TestNewKeyringRejectsBadInput(t *testing.T) {
	for _, tc := range []struct {
		name      string
		suite     sframe.CipherSuite
		epochBits int
		grace     time.Duration
		window    int
		want      error
	}{
		{"zero epoch bits", sframe.AES_128_GCM_SHA256_128, 0, 0, 64, ErrBadLayout},
		{"33 epoch bits", sframe.AES_128_GCM_SHA256_128, 33, 0, 64, ErrBadLayout},
		{"bad suite", 0x99, 4, 0, 64, sframe.ErrUnsupportedSuite},
		{"bad window", sframe.AES_128_GCM_SHA256_128, 4, 0, 0, sframe.ErrBadReplayWindow},
		{"32-bit tag", sframe.AES_128_CTR_HMAC_SHA256_32, 4, 0, 64, sframe.ErrShortTag},
		{"32-bit tag, 256-bit key", sframe.AES_256_CTR_HMAC_SHA512_32, 4, 0, 64, sframe.ErrShortTag},
	} {
		if _, err := NewKeyring(tc.suite, tc.epochBits, tc.grace, tc.window, nil, mlskeystest.NewCounterStore()); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := NewKeyring(sframe.AES_128_GCM_SHA256_128, 4, -time.Second, 64, nil, mlskeystest.NewCounterStore()); !errors.Is(err, ErrBadGrace) {
		t.Errorf("negative grace: %v, want ErrBadGrace", err)
	}
	if _, err := NewKeyring(sframe.AES_128_GCM_SHA256_128, 4, time.Second, 64, nil, nil); !errors.Is(err, ErrNoCounterStore) {
		t.Errorf("no counter store: %v, want ErrNoCounterStore", err)
	}
}

// brokenGroup is a Group whose exporter misbehaves.
type brokenGroup struct {
	*mlskeystest.Group
	out []byte
	err error
}

func (b brokenGroup) Export(string, []byte, int) ([]byte, error) { return b.out, b.err }

func TestSetEpochRejectsBadGroup(t *testing.T) {
	k, err := NewKeyring(sframe.AES_128_GCM_SHA256_128, 4, time.Second, 64, nil, mlskeystest.NewCounterStore())
	if err != nil {
		t.Fatal(err)
	}
	outside := mlskeystest.NewGroup(crypto.SHA256, make([]byte, 32), 1, 4, 4)
	if err := k.SetEpoch(outside); !errors.Is(err, ErrBadLayout) {
		t.Errorf("leaf outside tree: %v, want ErrBadLayout", err)
	}
	good := mlskeystest.NewGroup(crypto.SHA256, make([]byte, 32), 1, 0, 4)
	exportErr := errors.New("exporter failed")
	if err := k.SetEpoch(brokenGroup{good, nil, exportErr}); !errors.Is(err, exportErr) {
		t.Errorf("exporter error: %v, want it wrapped", err)
	}
	if err := k.SetEpoch(brokenGroup{good, make([]byte, 3), nil}); !errors.Is(err, ErrBadExport) {
		t.Errorf("short exporter output: %v, want ErrBadExport", err)
	}
	if _, ok := k.Epoch(); ok {
		t.Error("failed SetEpoch installed an epoch")
	}
	if err := k.SetEpoch(good); err != nil {
		t.Fatal(err)
	}
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestKeyringNoAllocations: once a sender's key is derived, the keyring adds
// no allocation to the frame path (GCM suites).
func TestKeyringNoAllocations(t *testing.T) {
	c := newCall(t, 2, 4, time.Hour)
	pt := make([]byte, 1200)
	frames := make([][]byte, 102)
	for i := range frames {
		frames[i] = c.send(0, string(pt))
	}
	c.mustRead(1, frames[0], string(pt))
	out := make([]byte, 0, len(pt))
	buf := make([]byte, 0, len(pt)+sframe.MaxHeaderSize+16)
	md := []byte("md")
	i := 1
	var readErr error
	unprotect := testing.AllocsPerRun(100, func() {
		if _, err := c.members[1].Unprotect(out[:0], md, frames[i]); err != nil {
			readErr = err
		}
		i++
	})
	if readErr != nil {
		t.Fatal(readErr)
	}
	protect := testing.AllocsPerRun(100, func() {
		buf, _ = c.members[0].Protect(0, buf[:0], md, pt)
	})
	if unprotect != 0 || protect != 0 {
		t.Errorf("allocations per frame: protect %v, unprotect %v; want 0", protect, unprotect)
	}
}
