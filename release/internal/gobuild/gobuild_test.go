package gobuild

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidVersion(t *testing.T) {
	for _, v := range []string{"v0.3.0", "v1.2.3-rc.1", "v10.0.0+build.5"} {
		if err := ValidVersion(v); err != nil {
			t.Errorf("%s: %v", v, err)
		}
	}
	for _, v := range []string{"", "0.3.0", "v0.3", "v01.2.3", "latest", "v1.2.3-", "v1.2.3 "} {
		if err := ValidVersion(v); err == nil || !strings.Contains(err.Error(), "not semver") {
			t.Errorf("%q: got %v, want a not-semver error", v, err)
		}
	}
}

func TestSelect(t *testing.T) {
	all, err := Select(nil)
	if err != nil || len(all) != len(targets) {
		t.Fatalf("Select(nil) = %v, %v", all, err)
	}
	got, err := Select([]string{"messaging", "guardyn"})
	if err != nil || len(got) != 2 || got[0].Name != "messaging" || got[1].Name != "guardyn" {
		t.Fatalf("Select = %v, %v", got, err)
	}
	if _, err := Select([]string{"auth", "mesaging"}); err == nil || !strings.Contains(err.Error(), `unknown service "mesaging"`) {
		t.Fatalf("unknown service: got %v", err)
	}
}

// TestCmdIsReproducible pins the flags a reproducible build needs; the
// byte-for-byte proof is TestBinariesReproducibleAcrossCheckouts in
// internal/bundle.
func TestCmdIsReproducible(t *testing.T) {
	c := Cmd("/src", targets[0], Platforms[0], Stamp{Version: "v1.0.0", Commit: "abc"}, "out")
	args := strings.Join(c.Args, " ")
	for _, want := range []string{"-trimpath", "-buildvcs=false", "-buildid=", "-X " + VersionPackage + ".Version=v1.0.0", "-X " + VersionPackage + ".Commit=abc"} {
		if !strings.Contains(args, want) {
			t.Errorf("build command %q lacks %q", args, want)
		}
	}
	env := strings.Join(c.Env, " ")
	for _, want := range []string{"CGO_ENABLED=0", "GOFLAGS=", "GOTOOLCHAIN=" + Toolchain, "GOWORK=off"} {
		if !strings.Contains(env, want) {
			t.Errorf("build env %q lacks %q", env, want)
		}
	}
}

// TestEveryServiceIsATarget: each service's main package
// (services/NAME/cmd/NAME) ships in a release, so a new service is not
// left out of it.
func TestEveryServiceIsATarget(t *testing.T) {
	mains, err := filepath.Glob("../../../services/*/cmd/*/main.go")
	if err != nil || len(mains) == 0 {
		t.Fatalf("no service main packages found: %v", err)
	}
	have := map[string]bool{}
	for _, tg := range targets {
		have[tg.Package] = tg.Image
	}
	for _, m := range mains {
		pkg := "./" + filepath.ToSlash(strings.TrimPrefix(filepath.Dir(m), "../../../"))
		if image, ok := have[pkg]; !ok || !image {
			t.Errorf("%s is not a release target with an image", pkg)
		}
	}
}

// TestWebAppIsATarget: the web app's server ships with the app in its
// image, built by the product's own build of the app with the pinned
// toolchain.
func TestWebAppIsATarget(t *testing.T) {
	ts, err := Select([]string{"guardyn-web"})
	if err != nil {
		t.Fatal(err)
	}
	w := ts[0]
	if !w.Image || w.Package != "./apps/guardyn-web" || w.Assets != "./apps/web/build" || w.AssetsDir != "usr/local/share/guardyn/web" {
		t.Fatalf("guardyn-web target %+v", w)
	}
	if _, err := os.Stat(filepath.Join("../../..", w.Package, "main.go")); err != nil {
		t.Fatalf("guardyn-web's package: %v", err)
	}
	c := AssetsCmd("/src", w, "/out")
	if got := strings.Join(c.Args, " "); got != "go run -trimpath -mod=readonly ./apps/web/build -o /out" {
		t.Errorf("assets command %q", got)
	}
	env := strings.Join(c.Env, " ")
	for _, want := range []string{"CGO_ENABLED=0", "GOFLAGS=", "GOTOOLCHAIN=" + Toolchain, "GOWORK=off"} {
		if !strings.Contains(env, want) {
			t.Errorf("assets env %q lacks %q", env, want)
		}
	}
	for _, bad := range []string{"GOOS=", "GOARCH="} {
		if strings.Contains(env, bad) {
			t.Errorf("assets env %q sets %s: the app's build chooses its own platform (js/wasm)", env, bad)
		}
	}
}
