package client

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc"

	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/broker/ca"
)

// fakeBroker answers RenewCertificate only.
type fakeBroker struct {
	v1.MemberServiceClient
	ca    *ca.CA
	now   time.Time // the broker's clock
	as    string    // identity it signs for
	err   error     // when set, the answer
	calls int
}

func (f *fakeBroker) RenewCertificate(_ context.Context, req *v1.RenewCertificateRequest, _ ...grpc.CallOption) (*v1.RenewCertificateResponse, error) {
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	cert, err := f.ca.SignClient(req.CsrPem, ca.Identity{Kind: ca.KindCluster, Name: f.as}, 30*time.Hour, f.now)
	if err != nil {
		return nil, err
	}
	return &v1.RenewCertificateResponse{CertificatePem: cert, CaPem: f.ca.CertPEM()}, nil
}

func expiryOf(t *testing.T, c *Credentials) time.Time {
	t.Helper()
	exp, err := c.Expiry()
	if err != nil {
		t.Fatal(err)
	}
	return exp
}

func TestRenewIfDue(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	authority, err := ca.New(ca.Options{Now: t0.Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, csrPEM, err := ca.NewKeyAndCSR("c1")
	if err != nil {
		t.Fatal(err)
	}
	certPEM, err := authority.SignClient(csrPEM, ca.Identity{Kind: ca.KindCluster, Name: "c1"}, 30*time.Hour, t0)
	if err != nil {
		t.Fatal(err)
	}
	creds := &Credentials{ClusterID: "c1", Addresses: []string{"127.0.0.1:1"}, CertPEM: certPEM, KeyPEM: keyPEM, CAPEM: authority.CertPEM()}
	now := t0
	var renewed []*Credentials
	m, err := NewMember(MemberOptions{Credentials: creds, Now: func() time.Time { return now },
		OnRenew: func(c *Credentials) { renewed = append(renewed, c) }})
	if err != nil {
		t.Fatal(err)
	}
	fb := &fakeBroker{ca: authority, as: "c1"}
	ctx := context.Background()
	step := func(what string, at time.Time, wantCalls, wantRenewed int) {
		t.Helper()
		now, fb.now = at, at
		m.renewIfDue(ctx, fb)
		if fb.calls != wantCalls || len(renewed) != wantRenewed {
			t.Fatalf("%s: %d RenewCertificate calls, %d renewals; want %d, %d", what, fb.calls, len(renewed), wantCalls, wantRenewed)
		}
	}

	step("fresh certificate", t0.Add(19*time.Hour), 0, 0)
	// Broker errors: nothing changes, and the next attempt waits a tenth
	// of the time left (here 54 min).
	fb.err = errors.New("unavailable")
	step("due, broker fails", t0.Add(21*time.Hour), 1, 0)
	step("right after the failure", t0.Add(21*time.Hour+time.Second), 1, 0)
	fb.err = nil
	// A certificate for someone else is refused.
	fb.as = "c2"
	step("after the pause, wrong identity", t0.Add(21*time.Hour+55*time.Minute), 2, 0)
	if string(m.Credentials().CertPEM) != string(certPEM) {
		t.Fatal("credentials changed by a refused renewal")
	}
	fb.as = "c1"
	step("good renewal", t0.Add(22*time.Hour+50*time.Minute), 3, 1)
	if !expiryOf(t, renewed[0]).After(expiryOf(t, creds)) || string(m.Credentials().KeyPEM) == string(keyPEM) {
		t.Fatalf("renewed credentials: expiry %v (old %v), new key %v", expiryOf(t, renewed[0]), expiryOf(t, creds), string(m.Credentials().KeyPEM) != string(keyPEM))
	}
	step("fresh again", t0.Add(23*time.Hour), 3, 1)

	// The broker's clock lags by 20.5 h: what it signs is due at once. It
	// is taken (it lasts longer), but not renewed again on every check.
	now = t0.Add(44 * time.Hour)
	fb.now = now.Add(-20*time.Hour - 30*time.Minute)
	m.renewIfDue(ctx, fb)
	if fb.calls != 4 || len(renewed) != 2 {
		t.Fatalf("skewed renewal: %d calls, %d renewals; want 4, 2", fb.calls, len(renewed))
	}
	m.renewIfDue(ctx, fb)
	if fb.calls != 4 {
		t.Fatalf("renewed again right after a renewal that is already due (%d calls)", fb.calls)
	}
}
