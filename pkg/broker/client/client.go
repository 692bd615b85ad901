// Package client is the member side of the broker: join with a token
// (verifying the broker by the CA pin before the secret leaves), dial with
// the cluster's certificate, publish the cluster's own records, heartbeat,
// and keep a local cache of everybody's records fed by a watch that
// resumes from the last revision after reconnects (exponential backoff with
// jitter). The cache survives broker outages: the data plane keeps
// running on the last known state.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	v1 "github.com/weftnet/weft/pkg/apis/broker/v1alpha1"
	"github.com/weftnet/weft/pkg/broker/ca"
	"github.com/weftnet/weft/pkg/broker/token"
)

// Credentials are what a member keeps after joining (in a Secret or a
// file): its key and certificate, the broker CA, and where the broker is.
type Credentials struct {
	ClusterID string   `json:"clusterID"`
	Addresses []string `json:"addresses"`
	CertPEM   []byte   `json:"cert"`
	KeyPEM    []byte   `json:"key"`
	CAPEM     []byte   `json:"ca"`
}

// Marshal encodes credentials for storage.
func (c *Credentials) Marshal() ([]byte, error) { return json.Marshal(c) }

// UnmarshalCredentials decodes stored credentials and checks they hang
// together.
func UnmarshalCredentials(b []byte) (*Credentials, error) {
	var c Credentials
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("credentials: %w", err)
	}
	if _, err := c.tlsCertificate(); err != nil {
		return nil, err
	}
	if len(c.Addresses) == 0 {
		return nil, errors.New("credentials: addresses: empty")
	}
	return &c, nil
}

func (c *Credentials) tlsCertificate() (tls.Certificate, error) {
	cert, err := tls.X509KeyPair(c.CertPEM, c.KeyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("credentials: key pair: %w", err)
	}
	return cert, nil
}

// Expiry is when the client certificate expires.
func (c *Credentials) Expiry() (time.Time, error) {
	cert, err := ca.ParseCertificatePEM(c.CertPEM)
	if err != nil {
		return time.Time{}, fmt.Errorf("credentials: certificate: %w", err)
	}
	return cert.NotAfter, nil
}

// JoinOptions configure Join.
type JoinOptions struct {
	// Token is the string `weftctl token create` printed.
	Token   string
	Cluster *v1.ClusterInfo
	// DialTimeout per broker address (default 10 s).
	DialTimeout time.Duration
}

// ErrPinMismatch means the broker presented a CA other than the one the
// token pins: the join is refused before the token secret is sent.
var ErrPinMismatch = errors.New("broker CA does not match the token's CA pin")

// Join exchanges the token for credentials, trying the token's broker
// addresses in order.
func Join(ctx context.Context, o JoinOptions) (*Credentials, *v1.JoinResponse, error) {
	tok, err := token.Parse(o.Token)
	if err != nil {
		return nil, nil, fmt.Errorf("join: %w", err)
	}
	if o.Cluster == nil || o.Cluster.Id == "" {
		return nil, nil, errors.New("join: cluster id: unset")
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = 10 * time.Second
	}
	keyPEM, csrPEM, err := ca.NewKeyAndCSR(o.Cluster.Id)
	if err != nil {
		return nil, nil, fmt.Errorf("join: %w", err)
	}
	var errs []error
	for _, addr := range tok.Addresses {
		resp, err := joinOnce(ctx, addr, tok, o, csrPEM)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			if errors.Is(err, ErrPinMismatch) {
				break // a broker impersonator: do not try to look elsewhere
			}
			continue
		}
		caCert, err := ca.ParseCertificatePEM(resp.CaPem)
		if err != nil {
			return nil, nil, fmt.Errorf("join: ca_pem from %s: %w", addr, err)
		}
		if err := token.VerifyPin(caCert, tok.CAPin); err != nil {
			return nil, nil, fmt.Errorf("join: %s: returned CA: %w: %v", addr, ErrPinMismatch, err)
		}
		return &Credentials{
			ClusterID: o.Cluster.Id, Addresses: tok.Addresses,
			CertPEM: resp.CertificatePem, KeyPEM: keyPEM, CAPEM: resp.CaPem,
		}, resp, nil
	}
	return nil, nil, fmt.Errorf("join: %w", errors.Join(errs...))
}

func joinOnce(ctx context.Context, addr string, tok token.Token, o JoinOptions, csrPEM []byte) (*v1.JoinResponse, error) {
	var pinErr error
	tc := &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The chain is checked against the pinned CA instead of system
		// roots, as kubeadm's discovery does.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			chain := make([]*x509.Certificate, 0, len(raw))
			for _, r := range raw {
				c, err := x509.ParseCertificate(r)
				if err != nil {
					return err
				}
				chain = append(chain, c)
			}
			if err := token.VerifyChain(chain, tok.CAPin, x509.VerifyOptions{}); err != nil {
				pinErr = fmt.Errorf("%w: %v", ErrPinMismatch, err)
				return pinErr
			}
			return nil
		},
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, o.DialTimeout)
	defer cancel()
	resp, err := v1.NewJoinServiceClient(conn).Join(cctx, &v1.JoinRequest{
		TokenId: tok.ID, TokenSecret: tok.Secret[:], CsrPem: csrPEM, Cluster: o.Cluster,
	}, grpc.WaitForReady(false))
	if pinErr != nil {
		return nil, pinErr
	}
	return resp, err
}

// Dial connects to one broker address with the member's (or admin's)
// certificate, verifying the broker against the CA in the credentials.
// addr "" means the first address.
func Dial(c *Credentials, addr string, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	cert, err := c.tlsCertificate()
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(c.CAPEM) {
		return nil, errors.New("credentials: ca: no certificate")
	}
	if addr == "" {
		if len(c.Addresses) == 0 {
			return nil, errors.New("credentials: addresses: empty")
		}
		addr = c.Addresses[0]
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool}
	if host, _, err := net.SplitHostPort(addr); err == nil {
		tc.ServerName = host
	}
	return grpc.NewClient(addr, append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}, opts...)...)
}
