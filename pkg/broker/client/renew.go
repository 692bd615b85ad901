package client

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/broker/ca"
)

// clone returns a copy that shares nothing mutable with c.
func (c *Credentials) clone() *Credentials {
	return &Credentials{
		ClusterID: c.ClusterID, Addresses: slices.Clone(c.Addresses),
		CertPEM: slices.Clone(c.CertPEM), KeyPEM: slices.Clone(c.KeyPEM), CAPEM: slices.Clone(c.CAPEM),
	}
}

// renewTimeout bounds one RenewCertificate call (heartbeats wait for it).
const renewTimeout = 30 * time.Second

// RenewAt is when a certificate is due for renewal: once less than a third
// of its validity is left.
func RenewAt(cert *x509.Certificate) time.Time {
	return cert.NotAfter.Add(-cert.NotAfter.Sub(cert.NotBefore) / 3)
}

// renewIfDue renews the member's certificate over cli when it is due.
// Failures are logged and retried later; they never end the session (the
// current certificate still works until it expires).
func (m *Member) renewIfDue(ctx context.Context, cli v1.MemberServiceClient) {
	now := m.o.Now()
	m.mu.Lock()
	cur, pause := m.creds, m.renewPause
	m.mu.Unlock()
	if now.Before(pause) {
		return
	}
	old, err := ca.ParseCertificatePEM(cur.CertPEM)
	if err != nil {
		m.log.Error("cannot read the client certificate to decide on renewal", "err", err)
		return
	}
	if now.Before(RenewAt(old)) {
		return
	}
	next, err := m.renew(ctx, cli, cur, old)
	if err != nil {
		if ctx.Err() != nil {
			return // the session ended: try again in the next one
		}
		// Do not hammer the broker: try again after a tenth of what is
		// left, between a minute and an hour.
		wait := min(max(old.NotAfter.Sub(now)/10, time.Minute), time.Hour)
		m.mu.Lock()
		m.renewPause = now.Add(wait)
		m.mu.Unlock()
		m.log.Warn("certificate renewal failed", "err", err, "expires", old.NotAfter, "retry_in", wait)
		return
	}
	cert, _ := ca.ParseCertificatePEM(next.CertPEM) // checked by renew
	pause = time.Time{}
	if !now.Before(RenewAt(cert)) {
		// Due again at once: the broker's clock is behind ours or its
		// certificates are short-lived. Do not renew on every heartbeat.
		wait := min(max(cert.NotAfter.Sub(now)/10, time.Minute), time.Hour)
		pause = now.Add(wait)
		m.log.Warn("renewed certificate is already due for renewal (clock skew with the broker?)",
			"not_before", cert.NotBefore, "not_after", cert.NotAfter, "now", now, "next_attempt_in", wait)
	}
	m.mu.Lock()
	m.creds = next
	m.renewPause = pause
	m.mu.Unlock()
	m.log.Info("client certificate renewed", "old_expiry", old.NotAfter, "new_expiry", cert.NotAfter)
	if m.o.OnRenew != nil {
		m.o.OnRenew(next.clone())
	}
}

// renew gets a certificate for a new key and checks it before it replaces
// the current one: it must chain to the CA the member already trusts,
// carry the member's identity, match the new key, and last longer than
// the current one.
func (m *Member) renew(ctx context.Context, cli v1.MemberServiceClient, cur *Credentials, old *x509.Certificate) (*Credentials, error) {
	keyPEM, csrPEM, err := ca.NewKeyAndCSR(cur.ClusterID)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithTimeout(ctx, renewTimeout)
	defer cancel()
	resp, err := cli.RenewCertificate(cctx, &v1.RenewCertificateRequest{CsrPem: csrPEM})
	if err != nil {
		return nil, fmt.Errorf("RenewCertificate: %w", err)
	}
	next := cur.clone()
	next.CertPEM, next.KeyPEM = resp.CertificatePem, keyPEM
	if _, err := next.tlsCertificate(); err != nil {
		return nil, fmt.Errorf("renewed certificate: %w", err)
	}
	cert, err := ca.ParseCertificatePEM(next.CertPEM)
	if err != nil {
		return nil, fmt.Errorf("renewed certificate: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(cur.CAPEM) {
		return nil, errors.New("credentials: ca: no certificate")
	}
	// Checked at its own start so that clock skew between broker and
	// member does not matter here; the broker checks real validity.
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots: pool, CurrentTime: cert.NotBefore, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, fmt.Errorf("renewed certificate: %w", err)
	}
	id, err := ca.IdentityOf(cert)
	if err != nil {
		return nil, fmt.Errorf("renewed certificate: %w", err)
	}
	if want := (ca.Identity{Kind: ca.KindCluster, Name: cur.ClusterID}); id != want {
		return nil, fmt.Errorf("renewed certificate is for %s, want %s", id, want)
	}
	if !cert.NotAfter.After(old.NotAfter) {
		return nil, fmt.Errorf("renewed certificate expires %s, not later than the current one (%s)", cert.NotAfter, old.NotAfter)
	}
	return next, nil
}
