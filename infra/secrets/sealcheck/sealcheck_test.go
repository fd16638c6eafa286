package sealcheck

import "testing"

func FuzzCheck(f *testing.F) {
	f.Add([]byte("apiVersion: v1\nkind: Secret\nstringData: {password: x}\n"))
	f.Add([]byte("sops: {mac: x, age: [a]}\ndata: {a: b}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_ = Check(data) // must not panic
	})
}
