package ratchet

import (
	"bytes"
	"errors"
	"testing"
)

// fuzzFixture holds receivers mid-conversation (with skipped keys and a previous chain) and
// genuine messages for them: skipped ones, one that starts a new chain, and one that is in-chain
// for the second receiver.
type fuzzFixture struct {
	receivers [][]byte // encoded States
	messages  [][]byte
}

func newFuzzFixture(tb testing.TB, cfg Config) fuzzFixture {
	alice, bob, skipped := midConversation(tb, cfg, 40)
	newChain := mustEncrypt(tb, alice, []byte("new chain"), []byte("ad"))
	inChain := mustEncrypt(tb, alice, []byte("in chain"), []byte("ad"))
	fx := fuzzFixture{receivers: [][]byte{mustMarshal(tb, bob)}}
	mustDecrypt(tb, bob, newChain, []byte("ad"), []byte("new chain"))
	fx.receivers = append(fx.receivers, mustMarshal(tb, bob))
	fx.messages = append(skipped, newChain, inChain)
	return fx
}

func FuzzDecrypt(f *testing.F) {
	fixtures := map[bool]fuzzFixture{}
	for _, he := range []bool{false, true} {
		fx := newFuzzFixture(f, Config{HeaderEncryption: he})
		fixtures[he] = fx
		for _, m := range fx.messages {
			for receiver := range uint8(len(fx.receivers)) {
				f.Add(he, receiver, m, []byte("ad"))
				f.Add(he, receiver, m, []byte(nil))
				f.Add(he, receiver, m[:len(m)/2], []byte("ad"))
			}
		}
	}
	f.Add(false, uint8(0), []byte{}, []byte{})
	f.Add(true, uint8(1), []byte{versionEncryptedHeader}, []byte{})
	f.Fuzz(func(t *testing.T, he bool, receiver uint8, message, ad []byte) {
		fx := fixtures[he]
		enc := fx.receivers[int(receiver)%len(fx.receivers)]
		s, err := Unmarshal(enc)
		if err != nil {
			t.Fatal(err)
		}
		s.rand = testStream(43)
		out, err := s.Decrypt(nil, message, ad)
		if err == nil {
			return // only genuine messages get here; other tests check their plaintext
		}
		if out != nil {
			t.Fatalf("output %x alongside error %v", out, err)
		}
		if !isAny(err, []error{ErrMalformed, ErrUnsupportedVersion, ErrDecrypt, ErrDuplicate, ErrTooManySkipped, ErrCounterExhausted}) {
			t.Fatalf("undocumented error %v", err)
		}
		if !bytes.Equal(mustMarshal(t, s), enc) {
			t.Fatalf("failed Decrypt (%v) changed the state", err)
		}
	})
}

func isAny(err error, targets []error) bool {
	for _, target := range targets {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

func FuzzUnmarshal(f *testing.F) {
	var probe [][]byte
	for _, he := range []bool{false, true} {
		alice, bob, _ := midConversation(f, Config{HeaderEncryption: he, MaxSkip: 50, MaxSkippedKeys: 60}, 44)
		for _, s := range []*State{alice, bob} {
			enc := mustMarshal(f, s)
			f.Add(enc)
			f.Add(enc[:stateFixedLen])
		}
		probe = append(probe, mustEncrypt(f, alice, []byte("probe"), nil))
	}
	_, fresh := newTestPair(f, Config{}, 45)
	f.Add(mustMarshal(f, fresh))
	f.Add([]byte{stateVersion})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := Unmarshal(data)
		if err != nil {
			if !isAny(err, []error{ErrMalformed, ErrUnsupportedVersion}) {
				t.Fatalf("undocumented error %v", err)
			}
			return
		}
		if again := mustMarshal(t, s); !bytes.Equal(again, data) {
			t.Fatal("marshal(unmarshal(x)) != x")
		}
		// Whatever a decoded state holds, using it must not panic.
		s.rand = testStream(46)
		for _, m := range probe {
			s.Decrypt(nil, m, nil)
		}
		s.Encrypt(nil, []byte("x"), nil)
	})
}
