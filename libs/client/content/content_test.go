package content

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func sample() Message {
	return Message{
		ID: ID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, Kind: KindText,
		Body: "hello, bob", Sent: time.UnixMilli(1_790_000_000_123).UTC(), From: "alice",
	}
}

func TestRoundTrip(t *testing.T) {
	receipt := Message{ID: NewID(), Kind: KindReceipt, Sent: time.UnixMilli(5).UTC(), From: "bob", Refs: []ID{NewID(), NewID()}}
	typing := Message{ID: NewID(), Kind: KindTyping, Sent: time.UnixMilli(6).UTC(), From: "bob"}
	sync := sample()
	sync.To = "carol"
	for _, m := range []Message{sample(), receipt, typing, sync} {
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("Encode(%+v): %v", m, err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("Decode(%s): %v", b, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip: got %+v, want %+v", got, m)
		}
	}
}

// TestFrozenEncoding pins the wire form: other clients read it.
func TestFrozenEncoding(t *testing.T) {
	b, err := Encode(sample())
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"v":1,"id":"0102030405060708090a0b0c0d0e0f10","kind":"text","body":"hello, bob","sent":1790000000123,"from":"alice"}`
	if string(b) != want {
		t.Fatalf("encoding = %s\nwant       %s", b, want)
	}
}

func TestDecodeRejects(t *testing.T) {
	cases := map[string]struct {
		in   string
		want error
	}{
		"not json":        {`hello`, ErrMalformed},
		"version 2":       {`{"v":2,"id":"0102030405060708090a0b0c0d0e0f10","kind":"text","sent":1,"from":"alice"}`, ErrUnsupportedVersion},
		"no version":      {`{"id":"0102030405060708090a0b0c0d0e0f10","kind":"text","sent":1,"from":"alice"}`, ErrUnsupportedVersion},
		"unknown kind":    {`{"v":1,"id":"0102030405060708090a0b0c0d0e0f10","kind":"call","sent":1,"from":"alice"}`, ErrMalformed},
		"short id":        {`{"v":1,"id":"0102","kind":"text","sent":1,"from":"alice"}`, ErrMalformed},
		"bad from":        {`{"v":1,"id":"0102030405060708090a0b0c0d0e0f10","kind":"text","sent":1,"from":"Alice!"}`, ErrMalformed},
		"short from":      {`{"v":1,"id":"0102030405060708090a0b0c0d0e0f10","kind":"text","sent":1,"from":"al"}`, ErrMalformed},
		"bad to":          {`{"v":1,"id":"0102030405060708090a0b0c0d0e0f10","kind":"text","sent":1,"from":"alice","to":"\n"}`, ErrMalformed},
		"receipt no refs": {`{"v":1,"id":"0102030405060708090a0b0c0d0e0f10","kind":"receipt","sent":1,"from":"alice"}`, ErrMalformed},
		"receipt bad ref": {`{"v":1,"id":"0102030405060708090a0b0c0d0e0f10","kind":"receipt","sent":1,"from":"alice","refs":["01"]}`, ErrMalformed},
		"too many refs":   {`{"v":1,"id":"0102030405060708090a0b0c0d0e0f10","kind":"receipt","sent":1,"from":"alice","refs":[` + strings.Repeat(`"0102030405060708090a0b0c0d0e0f10",`, MaxRefs) + `"0102030405060708090a0b0c0d0e0f10"]}`, ErrMalformed},
		"receipt body":    {`{"v":1,"id":"0102030405060708090a0b0c0d0e0f10","kind":"receipt","body":"x","sent":1,"from":"alice","refs":["0102030405060708090a0b0c0d0e0f10"]}`, ErrMalformed},
		"typing body":     {`{"v":1,"id":"0102030405060708090a0b0c0d0e0f10","kind":"typing","body":"x","sent":1,"from":"alice"}`, ErrMalformed},
		"text with refs":  {`{"v":1,"id":"0102030405060708090a0b0c0d0e0f10","kind":"text","sent":1,"from":"alice","refs":["0102030405060708090a0b0c0d0e0f10"]}`, ErrMalformed},
		"negative time":   {`{"v":1,"id":"0102030405060708090a0b0c0d0e0f10","kind":"text","sent":-1,"from":"alice"}`, ErrMalformed},
		"huge time":       {`{"v":1,"id":"0102030405060708090a0b0c0d0e0f10","kind":"text","sent":999999999999999999,"from":"alice"}`, ErrMalformed},
		"oversized input": {strings.Repeat(" ", MaxEncodedSize+1), ErrTooLarge},
		"oversized body":  {`{"v":1,"id":"0102030405060708090a0b0c0d0e0f10","kind":"text","body":"` + strings.Repeat("a", MaxBodySize+1) + `","sent":1,"from":"alice"}`, ErrTooLarge},
	}
	for name, c := range cases {
		if _, err := Decode([]byte(c.in)); !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", name, err, c.want)
		}
	}
}

func TestEncodeRejects(t *testing.T) {
	m := sample()
	m.Body = strings.Repeat("a", MaxBodySize+1)
	if _, err := Encode(m); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized body: err = %v, want ErrTooLarge", err)
	}
	m = sample()
	m.From = ""
	if _, err := Encode(m); !errors.Is(err, ErrMalformed) {
		t.Errorf("empty sender: err = %v, want ErrMalformed", err)
	}
	m = sample()
	m.Body = "\xff"
	if _, err := Encode(m); !errors.Is(err, ErrMalformed) {
		t.Errorf("invalid UTF-8 body: err = %v, want ErrMalformed", err)
	}
	m = sample()
	m.Kind = KindTyping
	if _, err := Encode(m); !errors.Is(err, ErrMalformed) {
		t.Errorf("typing with body: err = %v, want ErrMalformed", err)
	}
}

func TestParseID(t *testing.T) {
	id := NewID()
	got, err := ParseID(id.String())
	if err != nil || got != id {
		t.Fatalf("ParseID(%s) = %v, %v", id, got, err)
	}
	for _, bad := range []string{"", "zz", strings.Repeat("0", 30), strings.Repeat("0", 34)} {
		if _, err := ParseID(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("ParseID(%q): err = %v, want ErrMalformed", bad, err)
		}
	}
}

// FuzzDecode: arbitrary bytes never panic, and whatever decodes re-encodes to something
// that decodes to the same message.
func FuzzDecode(f *testing.F) {
	b, _ := Encode(sample())
	f.Add(b)
	f.Add([]byte(`{"v":1,"id":"0102030405060708090a0b0c0d0e0f10","kind":"receipt","sent":1,"from":"bob","refs":["0102030405060708090a0b0c0d0e0f10"]}`))
	f.Add([]byte(`{"v":1,"id":"0102030405060708090a0b0c0d0e0f10","kind":"typing","sent":1,"from":"bob","to":"carol"}`))
	f.Add([]byte(`{"v":2}`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"v":1,"id":"0102030405060708090a0b0c0d0e0f10","kind":"status-key","body":"0000002a:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","sent":1,"from":"bob"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Decode(data)
		if err != nil {
			return
		}
		again, err := Encode(m)
		if err != nil {
			t.Fatalf("decoded message does not re-encode: %v", err)
		}
		m2, err := Decode(again)
		if err != nil || !reflect.DeepEqual(m2, m) {
			t.Fatalf("re-encoded message changed: %+v vs %+v (%v)", m2, m, err)
		}
	})
}

// TestStatusKeyBody: a status key body round-trips, and every other body of the kind is
// malformed.
func TestStatusKeyBody(t *testing.T) {
	key := make([]byte, 32)
	key[0] = 7
	body := FormatStatusKey(42, key)
	id, got, err := ParseStatusKey(body)
	if err != nil || id != 42 || string(got) != string(key) {
		t.Fatalf("ParseStatusKey(%q) = %d, %x, %v", body, id, got, err)
	}
	for _, bad := range []string{"", "2a:" + body[9:], body[:len(body)-1], "0000002g" + body[8:], body + "A", "0000002a" + body[9:]} {
		m := Message{ID: NewID(), Kind: KindStatusKey, Body: bad, From: "bob"}
		if _, err := Encode(m); !errors.Is(err, ErrMalformed) {
			t.Errorf("body %q: %v", bad, err)
		}
	}
}
