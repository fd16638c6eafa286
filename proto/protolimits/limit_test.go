package protolimits_test

import (
	"errors"
	"testing"

	"github.com/guardyn/guardyn/proto/protolimits"
)

func TestParseComment(t *testing.T) {
	tests := []struct {
		comment string
		want    protolimits.Limit
	}{
		{" Username of the account. Max: 32 characters.\n", protolimits.Limit{Size: 32, Unit: protolimits.Characters}},
		{" Identity key.\n Exactly: 65 bytes.\n", protolimits.Limit{Size: 65, Exact: true, Unit: protolimits.Bytes}},
		{" Envelope.\n Max: 256 KiB.", protolimits.Limit{Size: 256 << 10, Unit: protolimits.Bytes}},
		{" Chunk. Max: 1 MiB.", protolimits.Limit{Size: 1 << 20, Unit: protolimits.Bytes}},
		{" Prekeys. Max: 100 items.", protolimits.Limit{Items: 100}},
		{" Packages.\n Max: 100 items, each max 16 KiB.\n", protolimits.Limit{Items: 100, Size: 16 << 10, Unit: protolimits.Bytes}},
		{" Ids. Max: 1000 items, each exactly 16 bytes.", protolimits.Limit{Items: 1000, Size: 16, Exact: true, Unit: protolimits.Bytes}},
		{" Users. Max: 5000 items, each max 64 characters.", protolimits.Limit{Items: 5000, Size: 64, Unit: protolimits.Characters}},
		{"Max: 7 bytes.", protolimits.Limit{Size: 7, Unit: protolimits.Bytes}},
	}
	for _, tt := range tests {
		got, ok, err := protolimits.ParseComment(tt.comment)
		if err != nil || !ok || got != tt.want {
			t.Errorf("ParseComment(%q) = %+v, %v, %v; want %+v, true, nil", tt.comment, got, ok, err, tt.want)
		}
		// String renders the grammar, so it must parse back to the same limit.
		again, ok, err := protolimits.ParseComment(got.String())
		if err != nil || !ok || again != got {
			t.Errorf("ParseComment(%q) = %+v, %v, %v; want %+v", got.String(), again, ok, err, got)
		}
	}
}

func TestParseCommentWithoutAnnotation(t *testing.T) {
	for _, c := range []string{"", " Device id within the account.", " Largest chunk, at most 1 MiB.", " Maximum: none."} {
		if l, ok, err := protolimits.ParseComment(c); ok || err != nil {
			t.Errorf("ParseComment(%q) = %+v, %v, %v; want no annotation", c, l, ok, err)
		}
	}
}

func TestParseCommentRejectsMalformed(t *testing.T) {
	for _, c := range []string{
		" Max: 32 characters",                // no final period
		" Max: 32 characters. More text.",    // not at the end
		" Max: 0 bytes.",                     // zero
		" Max: 064 bytes.",                   // leading zero
		" Max: -1 bytes.",                    // negative
		" Max: 32 chars.",                    // unknown unit
		" Max: 32 Bytes.",                    // wrong case
		" Max: 3.5 KiB.",                     // not an integer
		" Exactly: 10 items.",                // exact item counts are not part of the grammar
		" Max: 10 items, each 5 bytes.",      // missing max/exactly
		" Max: 10 items, each max 5 items.",  // items of items
		" Max: 10 items, each Max 5 bytes.",  // wrong case
		" Max: 4 bytes. Max: 5 bytes.",       // two annotations
		" Max: 2048 MiB.",                    // overflows the size bound
		" Max: 99999999999999999999 bytes.",  // overflows int
		" Exactly: 65 bytes. And Max: here.", // stray annotation words
	} {
		l, ok, err := protolimits.ParseComment(c)
		if !errors.Is(err, protolimits.ErrBadAnnotation) || ok {
			t.Errorf("ParseComment(%q) = %+v, %v, %v; want ErrBadAnnotation", c, l, ok, err)
		}
	}
}
