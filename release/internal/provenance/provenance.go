// Package provenance writes a release's SLSA v1.0 provenance as an in-toto
// statement (https://slsa.dev/spec/v1.0/provenance): which source (commit),
// which resolved dependencies (every linked module with its go.sum hash and
// the Go toolchain), which exact commands and environment, by which
// builder, produced which artifacts (binaries and images, by digest).
//
// Nothing time-dependent is recorded (no startedOn/finishedOn, no
// invocation id), so the statement is reproducible like the artifacts; the
// source's commit time is a parameter instead.
package provenance

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
)

// Statement and predicate type URIs.
const (
	StatementType = "https://in-toto.io/Statement/v1"
	PredicateType = "https://slsa.dev/provenance/v1"
	// BuildType names this release tool's build process and parameters.
	BuildType = "https://github.com/guardyn/guardyn/release/buildtypes/go-oci@v1"
	// DefaultBuilderID is the builder for releases built outside CI.
	DefaultBuilderID = "https://github.com/guardyn/guardyn/release/local"
	// SourceURI is the canonical source repository.
	SourceURI = "git+https://github.com/guardyn/guardyn"
)

// Subject is an artifact the statement is about.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Statement is an in-toto v1 statement with a SLSA v1 predicate.
type Statement struct {
	Type          string    `json:"_type"`
	Subject       []Subject `json:"subject"`
	PredicateType string    `json:"predicateType"`
	Predicate     Predicate `json:"predicate"`
}

type Predicate struct {
	BuildDefinition BuildDefinition `json:"buildDefinition"`
	RunDetails      RunDetails      `json:"runDetails"`
}

type BuildDefinition struct {
	BuildType            string               `json:"buildType"`
	ExternalParameters   ExternalParameters   `json:"externalParameters"`
	InternalParameters   InternalParameters   `json:"internalParameters"`
	ResolvedDependencies []ResourceDescriptor `json:"resolvedDependencies"`
}

// ExternalParameters are what the release engineer chose.
type ExternalParameters struct {
	Source  ResourceDescriptor `json:"source"`
	Version string             `json:"version"`
	Targets []string           `json:"targets"`
}

// InternalParameters are what the tool fixed.
type InternalParameters struct {
	SourceDateEpoch int64     `json:"sourceDateEpoch"`
	GoVersion       string    `json:"goVersion"`
	Commands        []Command `json:"commands"`
}

// Command is one build command as it ran (arguments and the environment
// variables the tool set; the output path is bundle-relative).
type Command struct {
	Args []string `json:"args"`
	Env  []string `json:"env"`
}

type ResourceDescriptor struct {
	URI    string            `json:"uri"`
	Digest map[string]string `json:"digest,omitempty"`
}

type RunDetails struct {
	Builder struct {
		ID string `json:"id"`
	} `json:"builder"`
}

// GoSum maps "module@version" to its go.sum h1: hash (of the module's
// content, not of its go.mod).
func GoSum(gosum []byte) (map[string]string, error) {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(gosum))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 || !strings.HasPrefix(f[2], "h1:") {
			return nil, fmt.Errorf("go.sum:%d: malformed line", n)
		}
		if strings.HasSuffix(f[1], "/go.mod") {
			continue
		}
		out[f[0]+"@"+f[1]] = f[2]
	}
	return out, sc.Err()
}

// Dependencies returns the resolved dependencies: the source commit, the Go
// toolchain (see [ModuleDescriptor]) and each module (path@version) with its
// go.sum hash, sorted. A module missing from go.sum is an error: the build
// could not have verified it.
func Dependencies(commit string, toolchain ResourceDescriptor, modules []string, sums map[string]string) ([]ResourceDescriptor, error) {
	deps := []ResourceDescriptor{
		{URI: SourceURI + "@" + commit, Digest: map[string]string{"gitCommit": commit}},
		toolchain,
	}
	seen := map[string]bool{}
	var mods []string
	for _, m := range modules {
		if !seen[m] {
			seen[m] = true
			mods = append(mods, m)
		}
	}
	sort.Strings(mods)
	for _, m := range mods {
		h, ok := sums[m]
		if !ok {
			return nil, fmt.Errorf("provenance: module %s is linked but not in go.sum", m)
		}
		deps = append(deps, ModuleDescriptor(m, h))
	}
	return deps, nil
}

// ModuleDescriptor describes a Go module (path@version) by its package URL
// and its go.sum hash ("h1:…"), as goModuleH1 (the base64 after "h1:").
// The Go toolchain is one too: golang.org/toolchain@v0.0.1-go1.27.3.linux-amd64.
func ModuleDescriptor(module, h1 string) ResourceDescriptor {
	return ResourceDescriptor{
		URI:    "pkg:golang/" + module,
		Digest: map[string]string{"goModuleH1": strings.TrimPrefix(h1, "h1:")},
	}
}

// Marshal encodes a statement with its subjects sorted by name.
func Marshal(st Statement) ([]byte, error) {
	st.Type, st.PredicateType = StatementType, PredicateType
	st.Predicate.BuildDefinition.BuildType = BuildType
	sort.Slice(st.Subject, func(i, j int) bool { return st.Subject[i].Name < st.Subject[j].Name })
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Parse decodes a statement and checks its types.
func Parse(b []byte) (Statement, error) {
	var st Statement
	if err := json.Unmarshal(b, &st); err != nil {
		return Statement{}, fmt.Errorf("provenance: %w", err)
	}
	if st.Type != StatementType || st.PredicateType != PredicateType {
		return Statement{}, fmt.Errorf("provenance: statement type %q / predicate %q, want %q / %q", st.Type, st.PredicateType, StatementType, PredicateType)
	}
	return st, nil
}
