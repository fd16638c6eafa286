package sframe

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzParseHeader checks that ParseHeader never panics, never reads past its
// input, and that every header it accepts re-encodes to the same bytes (the
// encoding is canonical).
func FuzzParseHeader(f *testing.F) {
	for _, tc := range loadRFCVectors(f).Header {
		f.Add([]byte(tc.Encoded))
	}
	f.Add([]byte{})
	f.Add([]byte{0x80, 0x07})
	f.Add([]byte{0xff, 1, 2, 3})
	f.Fuzz(func(t *testing.T, in []byte) {
		h, n, err := ParseHeader(in)
		if err != nil {
			if !errors.Is(err, ErrTruncated) && !errors.Is(err, ErrNonMinimalHeader) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if n < 1 || n > MaxHeaderSize || n > len(in) || n != h.Len() {
			t.Fatalf("length %d for %x (Len %d)", n, in, h.Len())
		}
		if enc := h.Append(nil); !bytes.Equal(enc, in[:n]) {
			t.Fatalf("re-encoding %+v gives %x, input was %x", h, enc, in[:n])
		}
	})
}

// FuzzUnprotect feeds arbitrary frames and metadata to a receiver holding
// keys for several KIDs, including the KID of genuine seed frames. Nothing
// may panic, every error must be one of the documented kinds, and a frame
// that decrypts must be one the sender produced (no forgery).
func FuzzUnprotect(f *testing.F) {
	const kid = 0x1234
	metadata := []byte("meta")
	for _, suite := range allSuites {
		s, err := NewShortTagSender(suite, kid, testBaseKey(1))
		if err != nil {
			f.Fatal(err)
		}
		for _, pt := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte{7}, 300)} {
			frame, err := s.Protect(nil, metadata, pt)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(uint16(suite), frame, metadata)
			f.Add(uint16(suite), frame[:len(frame)/2], metadata)
		}
	}
	for _, tc := range loadRFCVectors(f).SFrame {
		f.Add(uint16(tc.CipherSuite), []byte(tc.CT), []byte(tc.Metadata))
	}
	f.Fuzz(func(t *testing.T, suiteID uint16, frame, md []byte) {
		suite := allSuites[int(suiteID)%len(allSuites)]
		r, err := NewShortTagReceiver(suite, 64)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []uint64{0, 7, 8, 291, kid} {
			if err := r.AddKey(k, testBaseKey(1)); err != nil {
				t.Fatal(err)
			}
		}
		pt, err := r.Unprotect(nil, md, frame)
		if err != nil {
			for _, want := range []error{ErrTruncated, ErrNonMinimalHeader, ErrUnknownKeyID, ErrAuthentication} {
				if errors.Is(err, want) {
					return
				}
			}
			t.Fatalf("undocumented error: %v", err)
		}
		// It decrypted: the sender must produce this very frame for this
		// counter, plaintext and metadata.
		h, _, _ := ParseHeader(frame)
		s, err := NewShortTagSender(suite, h.KeyID, testBaseKey(1))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SetNextCounter(h.Counter); err != nil {
			t.Fatal(err)
		}
		again, err := s.Protect(nil, md, pt)
		if err != nil || !bytes.Equal(again, frame) {
			t.Fatalf("accepted a frame the sender would not produce: %x", frame)
		}
		if _, err := r.Unprotect(nil, md, frame); !errors.Is(err, ErrReplayed) {
			t.Fatalf("second delivery: %v, want ErrReplayed", err)
		}
	})
}
