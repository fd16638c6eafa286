package cryptobench

import "testing"

// TestRun checks that every round really completes a handshake and a message: a failing
// session step is an error, never a zero time.
func TestRun(t *testing.T) {
	r, err := Run(3)
	if err != nil {
		t.Fatal(err)
	}
	if r.Rounds != 3 || r.Handshake <= 0 || r.Message <= 0 {
		t.Fatalf("Run(3) = %+v", r)
	}
	if _, err := Run(0); err == nil {
		t.Fatal("Run(0) succeeded")
	}
}
