package bzlmod

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestRepoName(t *testing.T) {
	for path, want := range map[string]string{
		"google.golang.org/grpc":                        "org_golang_google_grpc",
		"google.golang.org/grpc/cmd/protoc-gen-go-grpc": "org_golang_google_grpc_cmd_protoc_gen_go_grpc",
		"github.com/nats-io/nats.go":                    "com_github_nats_io_nats_go",
		"github.com/nats-io/nats-server/v2":             "com_github_nats_io_nats_server_v2",
		"go.etcd.io/bbolt":                              "io_etcd_go_bbolt",
		"github.com/BurntSushi/toml":                    "com_github_burntsushi_toml",
		"cel.dev/expr":                                  "dev_cel_expr",
		"honnef.co/go/tools":                            "co_honnef_go_tools",
	} {
		if got := RepoName(path); got != want {
			t.Errorf("RepoName(%q) = %q, want %q", path, got, want)
		}
	}
}

const sampleGoModJSON = `{
	"Module": {"Path": "example.com/m"},
	"Go": "1.26.0",
	"Require": [
		{"Path": "go.etcd.io/bbolt", "Version": "v1.5.0"},
		{"Path": "golang.org/x/sys", "Version": "v0.50.0", "Indirect": true},
		{"Path": "google.golang.org/protobuf", "Version": "v1.36.12", "Indirect": true},
		{"Path": "google.golang.org/grpc/cmd/protoc-gen-go-grpc", "Version": "v1.6.2", "Indirect": true},
		{"Path": "github.com/bazelbuild/rules_go", "Version": "v0.65.0"}
	],
	"Tool": [
		{"Path": "google.golang.org/protobuf/cmd/protoc-gen-go"},
		{"Path": "google.golang.org/grpc/cmd/protoc-gen-go-grpc"}
	]
}`

func TestDirectRepos(t *testing.T) {
	m, err := ParseGoModJSON([]byte(sampleGoModJSON))
	if err != nil {
		t.Fatal(err)
	}
	// x/sys is indirect and provides no tool; rules_go comes from its Bazel
	// module, not go_deps.
	want := []string{
		"io_etcd_go_bbolt",
		"org_golang_google_grpc_cmd_protoc_gen_go_grpc",
		"org_golang_google_protobuf",
	}
	if got := DirectRepos(m); !reflect.DeepEqual(got, want) {
		t.Errorf("DirectRepos = %q, want %q", got, want)
	}
}

func TestProvidesToolNeedsPathBoundary(t *testing.T) {
	tools := []struct{ Path string }{{Path: "example.com/toolkit/cmd/x"}}
	if providesTool("example.com/tool", tools) {
		t.Error("example.com/tool must not provide example.com/toolkit/cmd/x")
	}
	if !providesTool("example.com/toolkit", tools) {
		t.Error("example.com/toolkit provides example.com/toolkit/cmd/x")
	}
}

func TestRepoConfig(t *testing.T) {
	m, err := ParseGoModJSON([]byte(sampleGoModJSON))
	if err != nil {
		t.Fatal(err)
	}
	got := string(RepoConfig(m))
	if !strings.Contains(got, `go_repository(name = "org_golang_x_sys", importpath = "golang.org/x/sys")`) {
		t.Errorf("RepoConfig lacks the indirect requirement golang.org/x/sys:\n%s", got)
	}
	if strings.Contains(got, "rules_go") {
		t.Errorf("RepoConfig names rules_go, which its Bazel module provides:\n%s", got)
	}
	if n := strings.Count(got, "go_repository("); n != 4 {
		t.Errorf("RepoConfig has %d repositories, want 4:\n%s", n, got)
	}
}

func TestParseGoModJSONErrors(t *testing.T) {
	for _, in := range []string{"", "{", `{"Go": "1.26"}`, `[]`} {
		if _, err := ParseGoModJSON([]byte(in)); err == nil {
			t.Errorf("ParseGoModJSON(%q) succeeded, want an error", in)
		}
	}
}

const sampleModule = `"""Doc string with use_repo(go_deps, "not_a_repo") inside."""

module(name = "m", version = "0.0.0")

bazel_dep(name = "rules_go", version = "0.65.0")
bazel_dep(name = 'gazelle', version = '0.53.0', repo_name = "bazel_gazelle")

go_sdk = use_extension("@rules_go//go:extensions.bzl", "go_sdk")
go_sdk.download(version = "1.26.8", experiments = ["x", "y"])

go_deps = use_extension("@gazelle//:extensions.bzl", "go_deps")
go_deps.from_file(go_mod = "//:go.mod")
use_repo(
    go_deps,
    "b_repo",  # a comment with "quotes" and a ) paren
    # "commented_out",
    "a_repo",
)
use_repo(go_sdk, "go_toolchains")
use_repo(go_deps, "c_repo")
`

func TestUseRepos(t *testing.T) {
	got, err := UseRepos([]byte(sampleModule), "go_deps")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"b_repo", "a_repo", "c_repo"}; !reflect.DeepEqual(got, want) {
		t.Errorf("UseRepos(go_deps) = %q, want %q", got, want)
	}
	if _, err := UseRepos([]byte(sampleModule), "other"); !errors.Is(err, ErrNoUseRepo) {
		t.Errorf("UseRepos(other) error = %v, want ErrNoUseRepo", err)
	}
}

func TestBazelDepVersion(t *testing.T) {
	for name, want := range map[string]string{"rules_go": "0.65.0", "gazelle": "0.53.0"} {
		got, err := BazelDepVersion([]byte(sampleModule), name)
		if err != nil || got != want {
			t.Errorf("BazelDepVersion(%q) = %q, %v; want %q", name, got, err, want)
		}
	}
	if _, err := BazelDepVersion([]byte(sampleModule), "protobuf"); !errors.Is(err, ErrNoBazelDep) {
		t.Errorf("BazelDepVersion(protobuf) error = %v, want ErrNoBazelDep", err)
	}
}

func TestSetUseRepos(t *testing.T) {
	one := strings.Replace(sampleModule, `use_repo(go_deps, "c_repo")`, "", 1)
	out, err := SetUseRepos([]byte(one), "go_deps", []string{"x_repo", "y_repo"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := UseRepos(out, "go_deps")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"x_repo", "y_repo"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after SetUseRepos, UseRepos = %q, want %q", got, want)
	}
	if !strings.Contains(string(out), "use_repo(\n    go_deps,\n    \"x_repo\",\n    \"y_repo\",\n)\nuse_repo(go_sdk") {
		t.Errorf("SetUseRepos layout:\n%s", out)
	}
	// Everything outside the call is kept byte for byte.
	if v, _ := BazelDepVersion(out, "gazelle"); v != "0.53.0" {
		t.Errorf("SetUseRepos lost the gazelle bazel_dep:\n%s", out)
	}
	if _, err := SetUseRepos([]byte(sampleModule), "go_deps", nil); err == nil {
		t.Error("SetUseRepos with two use_repo calls for go_deps succeeded, want an error")
	}
}

func TestParseErrors(t *testing.T) {
	for _, src := range []string{
		`use_repo(go_deps, "a"`,
		`use_repo(go_deps, "a)`,
		"use_repo(go_deps, \"a\nb\")",
		`use_repo go_deps`,
		`= x()`,
		`x = [1, 2`,
		`use_repo(go_deps, "\q")`,
	} {
		if _, err := UseRepos([]byte(src), "go_deps"); err == nil || errors.Is(err, ErrNoUseRepo) {
			t.Errorf("UseRepos(%q) error = %v, want a syntax error", src, err)
		}
	}
}

func FuzzUseRepos(f *testing.F) {
	f.Add([]byte(sampleModule))
	f.Add([]byte(`use_repo(go_deps, 'a', """b""", x.y(1), [2], {"k": (3)})`))
	f.Add([]byte(`use_repo(go_deps, "\`))
	f.Add([]byte(`"""`))
	f.Fuzz(func(t *testing.T, src []byte) {
		repos, err := UseRepos(src, "go_deps")
		if err != nil {
			return
		}
		// What parses must survive a rewrite with the same list, when there
		// is exactly one call to rewrite.
		out, err := SetUseRepos(src, "go_deps", repos)
		if err != nil {
			return
		}
		again, err := UseRepos(out, "go_deps")
		if err != nil {
			t.Fatalf("rewritten file does not parse: %v\n%s", err, out)
		}
		if !reflect.DeepEqual(again, repos) {
			t.Fatalf("rewrite changed the list: %q -> %q", repos, again)
		}
	})
}

func TestGoSDKVersion(t *testing.T) {
	got, err := GoSDKVersion([]byte(sampleModule))
	if err != nil || got != "1.26.8" {
		t.Errorf("GoSDKVersion = %q, %v; want 1.26.8", got, err)
	}
	if _, err := GoSDKVersion([]byte(`other.download(version = "1")`)); !errors.Is(err, ErrNoGoSDK) {
		t.Errorf("GoSDKVersion without go_sdk.download: error = %v, want ErrNoGoSDK", err)
	}
}

func TestCalls(t *testing.T) {
	calls, err := Calls([]byte(sampleModule))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range calls {
		got = append(got, fmt.Sprintf("%d:%s.%s%q", c.Line, c.Receiver, c.Name, c.Keywords))
	}
	want := []string{
		`3:.module["name" "version"]`,
		`5:.bazel_dep["name" "version"]`,
		`6:.bazel_dep["name" "version" "repo_name"]`,
		`8:.use_extension[]`,
		`9:go_sdk.download["version" "experiments"]`,
		`11:.use_extension[]`,
		`12:go_deps.from_file["go_mod"]`,
		`13:.use_repo[]`,
		`19:.use_repo[]`,
		`20:.use_repo[]`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("Calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
