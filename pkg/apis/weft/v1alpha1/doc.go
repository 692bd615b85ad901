// Package v1alpha1 holds weft's Kubernetes API types (group weft.io): the
// Gateway status each gateway node publishes and the RemoteCluster objects
// the active gateway mirrors from the broker for route agents to read.
//
// +kubebuilder:object:generate=true
// +groupName=weft.io
package v1alpha1

import (
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

// GroupVersion is weft.io/v1alpha1.
var GroupVersion = schema.GroupVersion{Group: "weft.io", Version: "v1alpha1"}

// SchemeBuilder registers the types; AddToScheme adds them to a scheme.
var (
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}
	AddToScheme   = SchemeBuilder.AddToScheme
)
