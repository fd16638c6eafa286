package kubetest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestApplyOverlays applies the CRDs of infra/k8s/crds and then every
// overlay of infra/k8s/overlays, each to a fresh control plane with the
// seed's five k3d nodes: every object must be accepted, every pod
// scheduled, every workload ready, every required anti-affinity hold, and
// every PodDisruptionBudget admit (and survive) one eviction.
func TestApplyOverlays(t *testing.T) {
	bin := findBinaries(t)
	root := repoRoot(t)
	overlays, err := filepath.Glob(filepath.Join(root, "infra/k8s/overlays/*/kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(overlays) == 0 {
		t.Fatal("no overlay under infra/k8s/overlays/*/kustomization.yaml")
	}
	crds := filepath.Join(root, "infra/k8s/crds")
	for _, k := range overlays {
		dir := filepath.Dir(k)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			c := startCluster(t, bin)
			if _, err := os.Stat(crds); err == nil {
				c.applyCRDs(crds)
			}
			for _, p := range c.checkOverlay(t, dir) {
				t.Error(p)
			}
		})
	}
}

// TestHarness runs the same checks on the test's own overlays: a good one
// that must pass, and bad ones each of which must fail with a problem that
// names the object at fault. It shows that TestApplyOverlays can fail.
func TestHarness(t *testing.T) {
	bin := findBinaries(t)
	c := startCluster(t, bin)
	c.applyCRDs("testdata/crds")
	if problems := c.checkOverlay(t, "testdata/overlays/good"); len(problems) > 0 {
		t.Errorf("the good overlay has problems:\n%s", strings.Join(problems, "\n"))
	}

	bad := []struct {
		dir  string
		want []string // every one must be in one problem
	}{
		{"antiaffinity", []string{"kubetest-bad-antiaffinity/spread-", "of ReplicaSet spread-", "didn't match pod anti-affinity rules"}},
		{"requests", []string{"kubetest-bad-requests/big-", "Insufficient cpu"}},
		{"pdb", []string{"PodDisruptionBudget kubetest-bad-pdb/tight", "admits no eviction"}},
		{"rejected", []string{"refused", "typo", "imagePullPolicyy"}},
		{"restricted", []string{"Deployment kubetest-bad-restricted/loose", "violates PodSecurity \"restricted:latest\""}},
		{"nocrd", []string{"refused", "Gadget"}},
	}
	// Apply every bad overlay first, so that their verdicts ripen together.
	applied := make([]overlay, len(bad))
	for i, b := range bad {
		applied[i] = c.applyOverlay(t, filepath.Join("testdata/bad", b.dir))
	}
	for i, b := range bad {
		t.Run(b.dir, func(t *testing.T) {
			problems := applied[i].refused
			if len(problems) == 0 {
				problems = c.inspect(t, applied[i])
			}
			if len(problems) == 0 {
				t.Fatal("no problem found")
			}
			found := false
			for _, p := range problems {
				all := true
				for _, w := range b.want {
					all = all && strings.Contains(p, w)
				}
				found = found || all
			}
			if !found {
				t.Errorf("no problem names all of %q; got:\n%s", b.want, strings.Join(problems, "\n"))
			}
			t.Logf("found as expected:\n%s", strings.Join(problems, "\n"))
		})
	}
}
