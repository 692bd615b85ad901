package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/weftnet/weft/pkg/broker/client"
	"github.com/weftnet/weft/pkg/wireguard"
)

// secrets reads and writes the gateway's Secrets in one namespace.
type secrets struct {
	kube kubernetes.Interface
	ns   string
}

// errNotFound wraps apierrors NotFound for callers that retry.
var errNotFound = errors.New("not found")

// ensureKey returns the cluster's WireGuard key from Secret
// weft-gateway-key, creating the Secret with a new key when it is absent.
// When two gateways race to create it, the loser reads the winner's key.
func (s secrets) ensureKey(ctx context.Context) (key wireguard.PrivateKey, created bool, err error) {
	get := func() (wireguard.PrivateKey, error) {
		sec, err := s.kube.CoreV1().Secrets(s.ns).Get(ctx, KeySecretName, metav1.GetOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) {
				return wireguard.PrivateKey{}, fmt.Errorf("secret %s/%s: %w", s.ns, KeySecretName, errNotFound)
			}
			return wireguard.PrivateKey{}, fmt.Errorf("read secret %s/%s: %w", s.ns, KeySecretName, err)
		}
		k, err := wireguard.ParsePrivateKey(sec.Data[KeySecretKey])
		if err != nil {
			return wireguard.PrivateKey{}, fmt.Errorf("secret %s/%s key %s: %w", s.ns, KeySecretName, KeySecretKey, err)
		}
		return k, nil
	}
	key, err = get()
	if !errors.Is(err, errNotFound) {
		return key, false, err
	}
	key, err = wireguard.GeneratePrivateKey()
	if err != nil {
		return key, false, err
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: KeySecretName, Namespace: s.ns, Labels: managedLabels()},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{KeySecretKey: key.MarshalSecret()},
	}
	_, err = s.kube.CoreV1().Secrets(s.ns).Create(ctx, sec, metav1.CreateOptions{})
	switch {
	case err == nil:
		return key, true, nil
	case apierrors.IsAlreadyExists(err):
		key, err = get()
		return key, false, err
	default:
		return wireguard.PrivateKey{}, false, fmt.Errorf("create secret %s/%s: %w", s.ns, KeySecretName, err)
	}
}

// credentials returns the stored broker credentials; errNotFound (wrapped)
// when the Secret does not exist.
func (s secrets) credentials(ctx context.Context) (*client.Credentials, error) {
	sec, err := s.kube.CoreV1().Secrets(s.ns).Get(ctx, CredentialsSecretName, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("secret %s/%s: %w", s.ns, CredentialsSecretName, errNotFound)
		}
		return nil, fmt.Errorf("read secret %s/%s: %w", s.ns, CredentialsSecretName, err)
	}
	c, err := client.UnmarshalCredentials(sec.Data[CredentialsSecretKey])
	if err != nil {
		return nil, fmt.Errorf("secret %s/%s key %s: %w", s.ns, CredentialsSecretName, CredentialsSecretKey, err)
	}
	return c, nil
}

// token returns the join token; errNotFound (wrapped) when absent.
func (s secrets) token(ctx context.Context) (string, error) {
	sec, err := s.kube.CoreV1().Secrets(s.ns).Get(ctx, TokenSecretName, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return "", fmt.Errorf("secret %s/%s: %w", s.ns, TokenSecretName, errNotFound)
		}
		return "", fmt.Errorf("read secret %s/%s: %w", s.ns, TokenSecretName, err)
	}
	tok := strings.TrimSpace(string(sec.Data[TokenSecretKey]))
	if tok == "" {
		return "", fmt.Errorf("secret %s/%s key %s: empty", s.ns, TokenSecretName, TokenSecretKey)
	}
	return tok, nil
}

// storeCredentials creates the credentials Secret, or replaces its data
// when replace is set (renewed credentials). Without replace, an existing
// Secret wins: its credentials are returned instead.
func (s secrets) storeCredentials(ctx context.Context, c *client.Credentials, replace bool) (*client.Credentials, error) {
	raw, err := c.Marshal()
	if err != nil {
		return nil, fmt.Errorf("encode credentials: %w", err)
	}
	api := s.kube.CoreV1().Secrets(s.ns)
	if replace {
		sec, err := api.Get(ctx, CredentialsSecretName, metav1.GetOptions{})
		if err == nil {
			sec.Data = map[string][]byte{CredentialsSecretKey: raw}
			if _, err := api.Update(ctx, sec, metav1.UpdateOptions{}); err != nil {
				return nil, fmt.Errorf("update secret %s/%s: %w", s.ns, CredentialsSecretName, err)
			}
			return c, nil
		}
		if !apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("read secret %s/%s: %w", s.ns, CredentialsSecretName, err)
		}
	}
	sec := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: CredentialsSecretName, Namespace: s.ns, Labels: managedLabels()},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{CredentialsSecretKey: raw},
	}
	_, err = api.Create(ctx, sec, metav1.CreateOptions{})
	switch {
	case err == nil:
		return c, nil
	case apierrors.IsAlreadyExists(err):
		return s.credentials(ctx)
	default:
		return nil, fmt.Errorf("create secret %s/%s: %w", s.ns, CredentialsSecretName, err)
	}
}
