package mls_test

import (
	"bytes"
	"compress/gzip"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/suite"
)

// hexBytes is a JSON hex string.
type hexBytes []byte

func (h *hexBytes) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := hex.DecodeString(s)
	*h = v
	return err
}

// loadVectors decodes testdata/name (or name.gz) into v.
func loadVectors(t *testing.T, name string, v any) {
	t.Helper()
	path := filepath.Join("testdata", name)
	var r io.Reader
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		f, err = os.Open(path + ".gz")
		if err == nil {
			r, err = gzip.NewReader(f)
		}
	} else {
		r = f
	}
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer f.Close()
	if err := json.NewDecoder(r).Decode(v); err != nil {
		t.Fatalf("decode %s: %v", name, err)
	}
}

// caseCounter counts the cases run per cipher suite and logs them.
type caseCounter map[suite.ID]int

func (c caseCounter) log(t *testing.T, file string) {
	t.Helper()
	ids := make([]int, 0, len(c))
	total := 0
	for id, n := range c {
		ids = append(ids, int(id))
		total += n
	}
	sort.Ints(ids)
	var parts []string
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf("suite %d: %d", id, c[suite.ID(id)]))
	}
	t.Logf("%s: %d cases run (%s)", file, total, strings.Join(parts, ", "))
	if total == 0 {
		t.Errorf("%s: no cases run", file)
	}
}

func mustSuite(t *testing.T, id uint16) *suite.Suite {
	t.Helper()
	s, err := suite.New(suite.ID(id))
	if err != nil {
		t.Fatalf("suite %d: %v", id, err)
	}
	return s
}

func checkEq(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if !bytes.Equal(got, want) {
		t.Errorf("%s:\n got %x\nwant %x", what, got, want)
	}
}
