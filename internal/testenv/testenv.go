// Package testenv is shared test support: where the repository and the
// control-plane binaries built by hack/build-assets.sh are, and a real
// kube-apiserver + etcd (controller-runtime's envtest) with weft's CRDs.
package testenv

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// RepoRoot is the repository root (this file lives two levels below it).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// CRDDir holds weft's CRD manifests.
func CRDDir() string { return filepath.Join(RepoRoot(), "deploy", "crds") }

// FindAssets returns the directory holding the binaries named by want
// (default kube-apiserver and etcd): $WEFT_ASSETS or $KUBEBUILDER_ASSETS
// when set (`make test` sets both), else .cache/assets/* under the
// repository root. It also returns the places it looked, for messages.
func FindAssets(want ...string) (string, []string) {
	if len(want) == 0 {
		want = []string{"kube-apiserver", "etcd"}
	}
	has := func(dir string) bool {
		for _, w := range want {
			fi, err := os.Stat(filepath.Join(dir, w))
			if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
				return false
			}
		}
		return true
	}
	var tried []string
	for _, env := range []string{"WEFT_ASSETS", "KUBEBUILDER_ASSETS"} {
		if dir := os.Getenv(env); dir != "" {
			if has(dir) {
				return dir, nil
			}
			tried = append(tried, "$"+env+"="+dir)
		}
	}
	pattern := filepath.Join(RepoRoot(), ".cache", "assets", "*")
	matches, _ := filepath.Glob(pattern)
	for _, dir := range matches {
		if has(dir) {
			return dir, nil
		}
	}
	return "", append(tried, pattern)
}

// Assets is FindAssets for a test: it skips, saying how to build them,
// when the binaries are not there.
func Assets(tb testing.TB, want ...string) string {
	tb.Helper()
	if len(want) == 0 {
		want = []string{"kube-apiserver", "etcd"}
	}
	dir, tried := FindAssets(want...)
	if dir == "" {
		tb.Skipf("no %s (looked at %s); run `make assets` (or `make test`, which builds them)",
			strings.Join(want, ", "), strings.Join(tried, ", "))
	}
	return dir
}

// StartControlPlane starts a real kube-apiserver + etcd with weft's CRDs
// installed and stops it when the test ends.
func StartControlPlane(tb testing.TB) *rest.Config {
	tb.Helper()
	env := &envtest.Environment{
		BinaryAssetsDirectory: Assets(tb),
		CRDDirectoryPaths:     []string{CRDDir()},
		ErrorIfCRDPathMissing: true,
	}
	start := time.Now()
	cfg, err := env.Start()
	if err != nil {
		tb.Fatalf("start control plane: %v", err)
	}
	tb.Cleanup(func() {
		if err := env.Stop(); err != nil {
			tb.Errorf("stop control plane: %v", err)
		}
	})
	tb.Logf("kube-apiserver + etcd up in %s", time.Since(start).Round(time.Millisecond))
	return cfg
}
