package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// DefaultPrefix is the key prefix a Store uses when New is given "".
const DefaultPrefix = "/weft/"

// listPageSize bounds the number of keys fetched by one range request in
// List; pages after the first are read at the first page's revision, so the
// result stays one consistent snapshot.
const listPageSize = 1000

// ErrCompacted reports that a requested revision is older than the oldest
// revision etcd still keeps. Test with errors.Is; errors.As with
// *CompactedError gives the revisions.
var ErrCompacted = errors.New("revision compacted")

// CompactedError is the error behind ErrCompacted in watch events: the
// watch could not resume after Requested because history up to
// CompactRevision is gone. Take a fresh snapshot with List and watch again
// from its revision.
type CompactedError struct {
	// Requested is the revision the watch was asked to resume after.
	Requested int64
	// CompactRevision is the revision etcd has compacted up to.
	CompactRevision int64
}

func (e *CompactedError) Error() string {
	return fmt.Sprintf("store: watch after revision %d: %v (compacted up to revision %d)", e.Requested, ErrCompacted, e.CompactRevision)
}

// Unwrap makes errors.Is(err, ErrCompacted) true.
func (e *CompactedError) Unwrap() error { return ErrCompacted }

// KV is one stored key and its value.
type KV struct {
	// Key is relative to the Store's prefix.
	Key   string
	Value []byte
	// CreateRevision is the revision at which the key was (last) created.
	CreateRevision int64
	// ModRevision is the revision of the last change to the key; for a key
	// in a delete event, the revision of the delete.
	ModRevision int64
}

// Store reads and writes opaque values under a key prefix in etcd. It is
// safe for concurrent use. It does not own the client: closing the client
// is the caller's business.
type Store struct {
	cli    *clientv3.Client
	prefix string
	log    *slog.Logger
}

// Option configures a Store.
type Option func(*Store)

// WithLogger sets the logger a Store reports watch terminations to (at
// debug level). The default discards.
func WithLogger(l *slog.Logger) Option {
	return func(s *Store) {
		if l != nil {
			s.log = l
		}
	}
}

// New returns a Store over cli keeping its keys under prefix ("" means
// DefaultPrefix; a missing trailing "/" is added). It does no I/O.
func New(cli *clientv3.Client, prefix string, opts ...Option) *Store {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	s := &Store{cli: cli, prefix: prefix, log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Prefix returns the absolute etcd key prefix of the Store.
func (s *Store) Prefix() string { return s.prefix }

// Client returns the etcd client the Store uses.
func (s *Store) Client() *clientv3.Client { return s.cli }

func (s *Store) abs(key string) string { return s.prefix + key }

func (s *Store) kv(in *mvccpb.KeyValue) KV {
	return KV{
		Key:            strings.TrimPrefix(string(in.Key), s.prefix),
		Value:          in.Value,
		CreateRevision: in.CreateRevision,
		ModRevision:    in.ModRevision,
	}
}

func checkKey(op, key string) error {
	if key == "" {
		return fmt.Errorf("store: %s: empty key", op)
	}
	return nil
}

// wrap names the operation and key, and makes etcd's "compacted" error
// match ErrCompacted too.
func wrap(op, key string, err error) error {
	if errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("store: %s %q: %w: %w", op, key, ErrCompacted, err)
	}
	return fmt.Errorf("store: %s %q: %w", op, key, err)
}

// Get returns the value of key; found is false when the key does not exist.
func (s *Store) Get(ctx context.Context, key string) (kv KV, found bool, err error) {
	if err := checkKey("get", key); err != nil {
		return KV{}, false, err
	}
	resp, err := s.cli.Get(ctx, s.abs(key))
	if err != nil {
		return KV{}, false, wrap("get", key, err)
	}
	if len(resp.Kvs) == 0 {
		return KV{}, false, nil
	}
	return s.kv(resp.Kvs[0]), true, nil
}

// List returns every key starting with keyPrefix ("" lists the whole
// Store), sorted by key, as one consistent snapshot, and the revision of
// that snapshot. Watch from that revision to follow later changes.
func (s *Store) List(ctx context.Context, keyPrefix string) ([]KV, int64, error) {
	from := s.abs(keyPrefix)
	end := clientv3.GetPrefixRangeEnd(from)
	var (
		out []KV
		rev int64
	)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(listPageSize)}
		if rev != 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		resp, err := s.cli.Get(ctx, from, opts...)
		if err != nil {
			return nil, 0, wrap("list", keyPrefix, err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			out = append(out, s.kv(kv))
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return out, rev, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// Put writes key unconditionally and returns the revision of the write.
func (s *Store) Put(ctx context.Context, key string, value []byte) (int64, error) {
	if err := checkKey("put", key); err != nil {
		return 0, err
	}
	resp, err := s.cli.Put(ctx, s.abs(key), string(value))
	if err != nil {
		return 0, wrap("put", key, err)
	}
	return resp.Header.Revision, nil
}

// Create writes key only if it does not exist. created reports whether it
// was written; rev is the revision of the write, or the current revision
// when the key already existed.
func (s *Store) Create(ctx context.Context, key string, value []byte) (rev int64, created bool, err error) {
	if err := checkKey("create", key); err != nil {
		return 0, false, err
	}
	k := s.abs(key)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).
		Then(clientv3.OpPut(k, string(value))).
		Commit()
	if err != nil {
		return 0, false, wrap("create", key, err)
	}
	return resp.Header.Revision, resp.Succeeded, nil
}

// CompareAndSwap writes key only if its ModRevision is expectModRev (0
// means the key must not exist). ok reports whether it was written; rev is
// the revision of the write, or the current revision when it was not.
func (s *Store) CompareAndSwap(ctx context.Context, key string, value []byte, expectModRev int64) (rev int64, ok bool, err error) {
	if err := checkKey("compare-and-swap", key); err != nil {
		return 0, false, err
	}
	k := s.abs(key)
	resp, err := s.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", expectModRev)).
		Then(clientv3.OpPut(k, string(value))).
		Commit()
	if err != nil {
		return 0, false, wrap("compare-and-swap", key, err)
	}
	return resp.Header.Revision, resp.Succeeded, nil
}

// Delete removes key. existed reports whether there was a key to remove;
// rev is the revision of the delete (or the current one if nothing was
// removed).
func (s *Store) Delete(ctx context.Context, key string) (rev int64, existed bool, err error) {
	if err := checkKey("delete", key); err != nil {
		return 0, false, err
	}
	resp, err := s.cli.Delete(ctx, s.abs(key))
	if err != nil {
		return 0, false, wrap("delete", key, err)
	}
	return resp.Header.Revision, resp.Deleted > 0, nil
}

// DeletePrefix removes every key starting with keyPrefix in one revision
// and returns that revision and how many keys were removed. "" removes
// everything under the Store's prefix.
func (s *Store) DeletePrefix(ctx context.Context, keyPrefix string) (rev, deleted int64, err error) {
	resp, err := s.cli.Delete(ctx, s.abs(keyPrefix), clientv3.WithPrefix())
	if err != nil {
		return 0, 0, wrap("delete-prefix", keyPrefix, err)
	}
	return resp.Header.Revision, resp.Deleted, nil
}

// Revision returns the current revision of the etcd cluster.
func (s *Store) Revision(ctx context.Context) (int64, error) {
	resp, err := s.cli.Get(ctx, s.prefix, clientv3.WithCountOnly())
	if err != nil {
		return 0, wrap("revision", "", err)
	}
	return resp.Header.Revision, nil
}

// Compact discards history before rev, for the whole etcd keyspace, and
// waits until the compaction is applied. Watches that resume before rev
// then fail with ErrCompacted. An error matching ErrCompacted means
// history was already compacted at or past rev.
func (s *Store) Compact(ctx context.Context, rev int64) error {
	if _, err := s.cli.Compact(ctx, rev, clientv3.WithCompactPhysical()); err != nil {
		if errors.Is(err, rpctypes.ErrCompacted) {
			return fmt.Errorf("store: compact to revision %d: %w: %w", rev, ErrCompacted, err)
		}
		return fmt.Errorf("store: compact to revision %d: %w", rev, err)
	}
	return nil
}
