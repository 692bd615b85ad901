// Package integration runs weft's controllers' dependencies for real: a
// kube-apiserver and etcd started by controller-runtime's envtest from the
// binaries hack/build-assets.sh builds.
package integration

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/internal/testenv"
)

// TestControlPlaneServesWeftCRDs starts a real kube-apiserver + etcd,
// installs weft's CRDs from deploy/crds, creates a RemoteCluster and reads
// it back, and checks that the schema rejects an invalid cluster id.
func TestControlPlaneServesWeftCRDs(t *testing.T) {
	cfg := testenv.StartControlPlane(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	kube, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "weft-system"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gvr := schema.GroupVersionResource{Group: "weft.io", Version: "v1alpha1", Resource: "remoteclusters"}
	rc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "weft.io/v1alpha1",
		"kind":       "RemoteCluster",
		"metadata":   map[string]any{"name": "c2", "namespace": "weft-system"},
		"spec": map[string]any{
			"clusterID": "c2",
			"subnets":   []any{"10.2.0.0/16", "10.102.0.0/16"},
			"endpoint":  map[string]any{"gateway": "c2-n1", "publicIP": "198.18.0.12", "port": int64(51820)},
		},
	}}
	if _, err := dyn.Resource(gvr).Namespace("weft-system").Create(ctx, rc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create RemoteCluster: %v", err)
	}
	got, err := dyn.Resource(gvr).Namespace("weft-system").Get(ctx, "c2", metav1.GetOptions{})
	if err != nil {
		t.Fatalf("get RemoteCluster: %v", err)
	}
	subnets, _, _ := unstructured.NestedStringSlice(got.Object, "spec", "subnets")
	port, _, _ := unstructured.NestedInt64(got.Object, "spec", "endpoint", "port")
	if len(subnets) != 2 || subnets[1] != "10.102.0.0/16" || port != 51820 {
		t.Fatalf("read back spec = %v", got.Object["spec"])
	}

	bad := rc.DeepCopy()
	bad.SetName("bad")
	_ = unstructured.SetNestedField(bad.Object, "Not_A_DNS_Label", "spec", "clusterID")
	if _, err := dyn.Resource(gvr).Namespace("weft-system").Create(ctx, bad, metav1.CreateOptions{}); err == nil {
		t.Fatal("the CRD schema accepted clusterID Not_A_DNS_Label")
	}
}
