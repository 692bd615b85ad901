package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	ctrlclient "sigs.k8s.io/controller-runtime/pkg/client"

	weftv1 "github.com/weftnet/weft/pkg/apis/weft/v1alpha1"
)

// objects writes the gateway's weft.io objects: its own Gateway and, on
// the active gateway, the RemoteClusters. It remembers what it last wrote
// and skips writes that would change nothing.
type objects struct {
	c    ctrlclient.Client
	ns   string
	log  *slog.Logger
	node string
	uid  types.UID // the Node's, for the owner reference (empty: none)

	lastGateway *weftv1.GatewayStatus
	lastRemote  map[string]weftv1.RemoteCluster // nil: unknown, list first
}

// writeGateway makes the Gateway named after the node carry status.
func (o *objects) writeGateway(ctx context.Context, status weftv1.GatewayStatus) error {
	if o.lastGateway != nil && equality.Semantic.DeepEqual(*o.lastGateway, status) {
		return nil
	}
	var gw weftv1.Gateway
	err := o.c.Get(ctx, ctrlclient.ObjectKey{Namespace: o.ns, Name: o.node}, &gw)
	if apierrors.IsNotFound(err) {
		gw = weftv1.Gateway{ObjectMeta: metav1.ObjectMeta{Name: o.node, Namespace: o.ns, Labels: managedLabels()}}
		if o.uid != "" {
			gw.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: o.node, UID: o.uid}}
		}
		err = o.c.Create(ctx, &gw)
	}
	if err != nil {
		o.lastGateway = nil
		return fmt.Errorf("gateway %s/%s: %w", o.ns, o.node, err)
	}
	gw.Status = *status.DeepCopy()
	if err := o.c.Status().Update(ctx, &gw); err != nil {
		o.lastGateway = nil
		return fmt.Errorf("gateway %s/%s: update status: %w", o.ns, o.node, err)
	}
	o.lastGateway = status.DeepCopy()
	return nil
}

// listRemoteClusters returns the RemoteClusters in the namespace.
func (o *objects) listRemoteClusters(ctx context.Context) ([]weftv1.RemoteCluster, error) {
	var l weftv1.RemoteClusterList
	if err := o.c.List(ctx, &l, ctrlclient.InNamespace(o.ns)); err != nil {
		return nil, fmt.Errorf("list remoteclusters in %s: %w", o.ns, err)
	}
	return l.Items, nil
}

// syncRemoteClusters makes the RemoteClusters of the namespace exactly
// desired (by name): creates, updates spec and status, deletes the rest.
func (o *objects) syncRemoteClusters(ctx context.Context, desired []weftv1.RemoteCluster) error {
	want := make(map[string]weftv1.RemoteCluster, len(desired))
	for _, rc := range desired {
		want[rc.Name] = rc
	}
	if o.lastRemote != nil && sameRemotes(o.lastRemote, want) {
		return nil
	}
	have, err := o.listRemoteClusters(ctx)
	if err != nil {
		o.lastRemote = nil
		return err
	}
	var errs []error
	seen := map[string]bool{}
	for i := range have {
		cur := &have[i]
		d, ok := want[cur.Name]
		if !ok {
			if err := o.c.Delete(ctx, cur, ctrlclient.Preconditions{UID: &cur.UID}); err != nil && !apierrors.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete remotecluster %s: %w", cur.Name, err))
			} else {
				o.log.Info("remote cluster removed", "remotecluster", cur.Name)
			}
			continue
		}
		seen[cur.Name] = true
		if err := o.updateRemote(ctx, cur, d); err != nil {
			errs = append(errs, err)
		}
	}
	for name, d := range want {
		if seen[name] {
			continue
		}
		obj := d.DeepCopy()
		obj.Status = weftv1.RemoteClusterStatus{}
		if err := o.c.Create(ctx, obj); err != nil {
			errs = append(errs, fmt.Errorf("create remotecluster %s: %w", name, err))
			continue
		}
		o.log.Info("remote cluster added", "remotecluster", name, "subnets", d.Spec.Subnets, "endpoint", d.Spec.Endpoint.Gateway)
		if err := o.updateRemote(ctx, obj, d); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		o.lastRemote = nil
		return err
	}
	o.lastRemote = want
	return nil
}

// updateRemote brings one existing object to d: spec and labels, then
// status.
func (o *objects) updateRemote(ctx context.Context, cur *weftv1.RemoteCluster, d weftv1.RemoteCluster) error {
	if !equality.Semantic.DeepEqual(cur.Spec, d.Spec) || !labelsContain(cur.Labels, d.Labels) {
		cur.Spec = *d.Spec.DeepCopy()
		if cur.Labels == nil {
			cur.Labels = map[string]string{}
		}
		for k, v := range d.Labels {
			cur.Labels[k] = v
		}
		if err := o.c.Update(ctx, cur); err != nil {
			return fmt.Errorf("update remotecluster %s: %w", cur.Name, err)
		}
		o.log.Info("remote cluster updated", "remotecluster", cur.Name, "subnets", d.Spec.Subnets, "endpoint", d.Spec.Endpoint.Gateway)
	}
	if !equality.Semantic.DeepEqual(cur.Status, d.Status) {
		cur.Status = *d.Status.DeepCopy()
		if err := o.c.Status().Update(ctx, cur); err != nil {
			return fmt.Errorf("update remotecluster %s status: %w", cur.Name, err)
		}
	}
	return nil
}

func sameRemotes(a, b map[string]weftv1.RemoteCluster) bool {
	if len(a) != len(b) {
		return false
	}
	for k, x := range a {
		y, ok := b[k]
		if !ok || !equality.Semantic.DeepEqual(x.Spec, y.Spec) || !equality.Semantic.DeepEqual(x.Status, y.Status) {
			return false
		}
	}
	return true
}

func labelsContain(have, want map[string]string) bool {
	for k, v := range want {
		if have[k] != v {
			return false
		}
	}
	return true
}
