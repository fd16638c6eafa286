package record

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/guardyn/guardyn/libs/msgstore"
)

var testInbox = msgstore.Inbox{UserID: "alice", DeviceID: "phone"}

func sampleMessage() *msgstore.Message {
	return &msgstore.Message{
		Inbox:     testInbox,
		ID:        msgstore.ID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
		Kind:      7,
		Body:      []byte("opaque ciphertext"),
		Timestamp: time.Unix(1_700_000_000, 123),
		Expiry:    time.Unix(1_800_000_000, 0),
	}
}

// samples returns one encoding of each record type, used as test inputs and fuzz seeds.
func samples() [][]byte {
	empty := sampleMessage()
	empty.Body, empty.Timestamp, empty.Expiry = nil, time.Time{}, time.Time{}
	return [][]byte{
		AppendMessage(nil, 42, sampleMessage()),
		AppendMessage(nil, 1, empty),
		AppendDelete(nil, testInbox, []uint64{1, 2, 1 << 60}),
		AppendDelete(nil, testInbox, nil),
		AppendDeleteInbox(nil, msgstore.Inbox{UserID: strings.Repeat("u", 255), DeviceID: "d"}),
	}
}

func TestMessageRoundTrip(t *testing.T) {
	m := sampleMessage()
	b := AppendMessage([]byte("prefix"), 42, m)
	r, n, err := Decode(b[len("prefix"):])
	if err != nil {
		t.Fatal(err)
	}
	if n != len(b)-len("prefix") {
		t.Errorf("length %d, want %d", n, len(b)-len("prefix"))
	}
	got := r.Message
	if r.Type != TypeMessage || r.Seq != 42 || r.Inbox != m.Inbox || got.Inbox != m.Inbox || got.ID != m.ID ||
		got.Kind != m.Kind || !bytes.Equal(got.Body, m.Body) || !got.Timestamp.Equal(m.Timestamp) || !got.Expiry.Equal(m.Expiry) {
		t.Errorf("decoded %+v, want seq 42 and %+v", r, m)
	}

	m.Timestamp, m.Expiry, m.Body = time.Time{}, time.Time{}, nil
	r, _, err = Decode(AppendMessage(nil, 1, m))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Message.Timestamp.IsZero() || !r.Message.Expiry.IsZero() || len(r.Message.Body) != 0 {
		t.Errorf("zero times and empty body decoded as %+v", r.Message)
	}
}

// TestMessageHead checks that the head of a message record gives the index what it
// needs without the rest, and that a head too short or of another record is refused.
func TestMessageHead(t *testing.T) {
	m := sampleMessage()
	b := AppendMessage(nil, 42, m)
	seq, id, expiry, err := DecodeMessageHead(b[:MessageHeadSize])
	if err != nil || seq != 42 || id != m.ID || !expiry.Equal(m.Expiry) {
		t.Errorf("DecodeMessageHead = %d, %x, %v, %v; want 42, %x, %v", seq, id, expiry, err, m.ID, m.Expiry)
	}
	if _, _, _, err := DecodeMessageHead(b[:MessageHeadSize-1]); !errors.Is(err, ErrShort) {
		t.Errorf("short head: %v, want ErrShort", err)
	}
	del := AppendDelete(nil, testInbox, make([]uint64, 8))
	if _, _, _, err := DecodeMessageHead(del); err == nil {
		t.Error("a delete record decoded as a message head")
	}
}

func TestDeleteRoundTrip(t *testing.T) {
	r, _, err := Decode(AppendDelete(nil, testInbox, []uint64{3, 1 << 60}))
	if err != nil {
		t.Fatal(err)
	}
	if r.Type != TypeDelete || r.Inbox != testInbox || len(r.Seqs) != 2 || r.Seqs[0] != 3 || r.Seqs[1] != 1<<60 {
		t.Errorf("decoded %+v", r)
	}
	r, _, err = Decode(AppendDeleteInbox(nil, testInbox))
	if err != nil {
		t.Fatal(err)
	}
	if r.Type != TypeDeleteInbox || r.Inbox != testInbox {
		t.Errorf("decoded %+v", r)
	}
}

func TestMaxBody(t *testing.T) {
	m := sampleMessage()
	m.Inbox = msgstore.Inbox{UserID: strings.Repeat("u", 255), DeviceID: strings.Repeat("d", 255)}
	m.Body = make([]byte, msgstore.MaxBodySize)
	b := AppendMessage(nil, 1, m)
	if len(b) != HeaderSize+MaxSize {
		t.Errorf("largest record is %d bytes, MaxSize allows %d", len(b), HeaderSize+MaxSize)
	}
	if _, _, err := Decode(b); err != nil {
		t.Fatal(err)
	}
}

// TestTruncated checks that every prefix of a record is reported as short, which is how
// a torn tail is recognized.
func TestTruncated(t *testing.T) {
	for _, b := range samples() {
		for n := range len(b) {
			if _, _, err := Decode(b[:n]); !errors.Is(err, ErrShort) {
				t.Fatalf("prefix of %d of %d bytes: %v, want ErrShort", n, len(b), err)
			}
		}
	}
}

// TestBitFlips checks that every single-bit corruption is rejected.
func TestBitFlips(t *testing.T) {
	for _, b := range samples() {
		for i := range 8 * len(b) {
			c := bytes.Clone(b)
			c[i/8] ^= 1 << (i % 8)
			if r, _, err := Decode(c); err == nil {
				t.Fatalf("flip of bit %d accepted as %+v", i, r)
			}
		}
	}
}

func TestMalformed(t *testing.T) {
	cases := map[string][]byte{
		"zero length":      {0, 0, 0, 0, 0, 0, 0, 0},
		"huge length":      {0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 1},
		"unknown type":     seal(9, nil),
		"short message":    seal(byte(TypeMessage), make([]byte, fixedMessageSize-1)),
		"empty user":       seal(byte(TypeDeleteInbox), []byte{0, 1, 'd'}),
		"name past end":    seal(byte(TypeDeleteInbox), []byte{5, 'a'}),
		"ragged delete":    seal(byte(TypeDelete), []byte{1, 'u', 1, 'd', 1, 2, 3}),
		"trailing garbage": seal(byte(TypeDeleteInbox), []byte{1, 'u', 1, 'd', 0}),
	}
	for name, b := range cases {
		if _, _, err := Decode(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
}

// seal builds a record with a valid checksum around arbitrary contents.
func seal(t byte, payload []byte) []byte {
	start, b := begin(nil, Type(t))
	return end(append(b, payload...), start)
}

func FuzzDecode(f *testing.F) {
	for _, b := range samples() {
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	f.Add(seal(byte(TypeDelete), []byte{1, 'u', 1, 'd', 1, 2, 3}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, n, err := Decode(b)
		// The head of a message record that decodes must agree with the record.
		if seq, id, expiry, herr := DecodeMessageHead(b); err == nil && r.Type == TypeMessage {
			if herr != nil || seq != r.Seq || id != r.Message.ID || !expiry.Equal(r.Message.Expiry) {
				t.Fatalf("DecodeMessageHead = %d, %x, %v, %v; Decode has %d, %x, %v",
					seq, id, expiry, herr, r.Seq, r.Message.ID, r.Message.Expiry)
			}
		}
		if err != nil {
			return
		}
		if n > len(b) {
			t.Fatalf("consumed %d of %d bytes", n, len(b))
		}
		// A record that decodes must encode back to the same bytes.
		var again []byte
		switch r.Type {
		case TypeMessage:
			again = AppendMessage(nil, r.Seq, &r.Message)
		case TypeDelete:
			again = AppendDelete(nil, r.Inbox, r.Seqs)
		case TypeDeleteInbox:
			again = AppendDeleteInbox(nil, r.Inbox)
		}
		if !bytes.Equal(again, b[:n]) {
			t.Fatalf("re-encoding differs:\n got %x\nwant %x", again, b[:n])
		}
	})
}
