package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestCommands(t *testing.T) {
	var out bytes.Buffer
	if err := run("check", []string{"-root", "../../k8s", "-overlay", "local"}, nil, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "local:") || !strings.Contains(out.String(), "objects pass the policy") {
		t.Fatalf("check printed %q", out.String())
	}
	// prod with the committed placeholder digests fails the check, naming a container.
	err := run("check", []string{"-root", "../../k8s", "-overlay", "prod"}, nil, &out)
	if err == nil || !strings.Contains(err.Error(), "carries the placeholder digest") {
		t.Fatalf("check prod without a bundle: err = %v", err)
	}
	// render with the bundle and the test key: digests pinned, secrets opened.
	out.Reset()
	err = run("render", []string{"-root", "../../k8s", "-overlay", "local", "-domain", "chat.example.com",
		"-age-key", "../../k8s/secrets/local/age-test-key.txt"}, nil, &out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kind: Secret", "name: grafana-admin", "host: chat.example.com"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("render output lacks %q", want)
		}
	}
	if err := run("render", []string{"-root", "../../k8s", "-overlay", "local", "-images", "../../policy/testdata/missing.json"}, nil, &out); err == nil {
		t.Error("render with a missing lock file succeeded")
	}
	if err := run("deploy", []string{"-root", "../../k8s"}, nil, &out); err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Errorf("unknown command: err = %v", err)
	}
}
